"""Codemod: make every public function of the apps' `services.py` keyword-only and rewrite its
callers to pass keywords (STYLE.md: services are `def x(*, …)`).

    .venv/bin/python scripts/keyword_only_services.py          # rewrite in place
    .venv/bin/python scripts/keyword_only_services.py --check  # list what it would change

Run it again after merging a branch that adds services; tests/orchestrio/test_conventions.py's
ratchet fails until it has. A function that is passed somewhere as a value (a hook receiver, a
registry's entry) keeps the signature its caller defines and is left alone, as are names defined
more than once in the code base (their calls cannot be told apart here; the script lists them).
A call with `*args` is listed, not rewritten.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", "node_modules", "migrations", "__pycache__", "var", "static", "templates"}


def python_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(ROOT).parts))


def service_modules() -> list[Path]:
    return sorted(p for p in ROOT.glob("*/services.py") if p.parent.name not in SKIP_DIRS)


def positional(node: ast.FunctionDef) -> list[str]:
    return [a.arg for a in node.args.posonlyargs + node.args.args]


def service_bindings(path: Path, tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names this file binds to a services module, and to a function of one (its own
    top-level functions, when it is one)."""
    modules, functions = set(), set()
    if path.name == "services.py":
        functions |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            for alias in node.names:
                if alias.name == "services" or alias.name.endswith(".services"):
                    modules.add(alias.asname or alias.name)
                elif source == "services" or source.endswith(".services"):
                    functions.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.endswith(".services") and alias.asname:
                    modules.add(alias.asname)
    return modules, functions


def main(check: bool) -> int:
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in python_files()}
    defined: dict[str, int] = defaultdict(int)
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined[node.name] += 1
    # Functions used as values: any Name/Attribute that is not the callee of a call.
    callees = {id(node.func) for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.Call)}
    as_value = {
        (node.id if isinstance(node, ast.Name) else node.attr)
        for path, tree in trees.items()
        if path.relative_to(ROOT).parts[0] not in {"tests", "bench"}  # a test's stand-in defines no API
        for node in ast.walk(tree)
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load) and id(node) not in callees
    }

    targets: dict[str, list[str]] = {}
    edits: dict[Path, list[tuple[int, int, int, str]]] = defaultdict(list)  # (line, byte column, bytes to drop, text)
    notes = []
    for path in service_modules():
        source = path.read_bytes().splitlines(keepends=True)
        for node in trees[path].body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                continue
            params = positional(node)
            if not params:
                continue
            if node.args.posonlyargs or node.args.vararg:
                notes.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: positional-only or *args; by hand")
                continue
            if node.name in as_value:
                notes.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: passed as a value (a hook or registry); left alone")
                continue
            if defined[node.name] > 1:
                notes.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: defined {defined[node.name]} times; by hand")
                continue
            targets[node.name] = params
            first = node.args.args[0]
            edits[path].append((first.lineno, first.col_offset, 0, "*, "))
            if node.args.kwonlyargs:  # drop the bare `*` that used to follow the positional ones
                last = node.args.args[-1]
                ends = [last, *([node.args.defaults[-1]] if node.args.defaults else [])]
                line, column = max((n.end_lineno, n.end_col_offset) for n in ends)
                while True:
                    found = source[line - 1].find(b"*", column)
                    if found >= 0:
                        break
                    line, column = line + 1, 0
                rest = source[line - 1][found:]
                drop = len(rest) - len(rest[1:].lstrip(b", \t")) if rest[1:].strip(b", \t\r\n") else len(rest)
                if not source[line - 1][:found].strip():  # `*,` alone on its line
                    found, drop = 0, len(source[line - 1])
                edits[path].append((line, found, drop, ""))

    for path, tree in trees.items():
        services_modules, service_names = service_bindings(path, tree)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            if isinstance(call.func, ast.Name) and call.func.id in service_names:
                name = call.func.id
            elif isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) and call.func.value.id in services_modules:
                name = call.func.attr
            else:
                continue
            if name not in targets or not call.args:
                continue
            if any(isinstance(arg, ast.Starred) for arg in call.args):
                notes.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}(*…): by hand")
                continue
            for param, arg in zip(targets[name], call.args, strict=False):
                edits[path].append((arg.lineno, arg.col_offset, 0, f"{param}="))

    for path, changes in sorted(edits.items()):
        print(f"{path.relative_to(ROOT)}: {len(changes)} edit(s)")
        if check:
            continue
        lines = path.read_bytes().splitlines(keepends=True)
        for line, column, drop, text in sorted(changes, reverse=True):
            raw = lines[line - 1]
            lines[line - 1] = raw[:column] + text.encode() + raw[column + drop :]
        path.write_bytes(b"".join(lines))
    for note in notes:
        print("note:", note)
    return 1 if check and edits else 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
