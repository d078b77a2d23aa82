"""Every third-party package the code imports is declared in pyproject.toml: the project's code
against `dependencies`, the tests, benchmarks and developer scripts (`scripts/`: run from a checkout
after `make test`, e.g. the console screenshots through Playwright) against `dependencies` plus
the `test` extra. A
package that only arrives as another one's dependency (httpcore under httpx) can vanish or change
major version with that package's next release.

Import names are mapped to distributions with importlib.metadata.packages_distributions(), so the
check follows what is installed (`yaml` → PyYAML, `jwt` → PyJWT) rather than a hand-kept table."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Not the project's: the virtualenv, and folders that are not Python code.
SKIP = {".venv", ".git", "node_modules", "static", "templates", "docs"}
TEST_CODE = {"tests", "bench", "scripts"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group()) for requirement in requirements}


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _requirement_names(project["dependencies"])
    return runtime, runtime | _requirement_names(project["optional-dependencies"]["test"])


def _client_declared() -> set[str]:
    """client/ is a package of its own (the SDK and `ork`): its code against its own pyproject.toml."""
    path = ROOT / "client" / "pyproject.toml"
    if not path.exists():
        return set()
    project = tomllib.loads(path.read_text())["project"]
    extras = [requirement for group in project.get("optional-dependencies", {}).values() for requirement in group]
    return _requirement_names(project["dependencies"] + extras)


def _python_files():
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if not SKIP.intersection(parts):
            yield path


def _first_party() -> set[str]:
    """The project's own top-level modules: its app folders and the files at its root."""
    names = {path.stem for path in ROOT.glob("*.py")}
    names |= {path.parent.name for path in ROOT.glob("*/__init__.py")}
    names |= {path.parent.name for path in ROOT.glob("client/*/__init__.py")}  # orchestrio_client (pytest's pythonpath)
    return names | {path.name for path in ROOT.iterdir() if path.is_dir() and path.name not in SKIP and any(path.glob("*.py"))}


def _imports(path: Path):
    """The top-level names of absolute imports, anywhere in the file (function-level too)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0], node.lineno


def undeclared_imports() -> list[str]:
    runtime, with_tests = _declared()
    client = _client_declared()
    distributions = importlib.metadata.packages_distributions()
    local = _first_party()
    problems = []
    for path in _python_files():
        relative = path.relative_to(ROOT)
        allowed = with_tests if relative.parts[0] in TEST_CODE else client if relative.parts[0] == "client" else runtime
        # A script run by path (bench/) imports the modules beside it.
        siblings = {sibling.stem for sibling in path.parent.glob("*.py")}
        for name, line in _imports(path):
            if name in sys.stdlib_module_names or name in local or name in siblings or name == "__future__":
                continue
            dists = {_normalize(dist) for dist in distributions.get(name, [])}
            if not dists:
                problems.append(f"{relative}:{line}: imports {name}, which no installed distribution provides")
            elif not dists & allowed:
                problems.append(f"{relative}:{line}: imports {name} ({', '.join(sorted(dists))}), not declared in pyproject.toml")
    return problems


def test_every_third_party_import_is_declared():
    assert undeclared_imports() == []


def test_the_check_sees_an_undeclared_import(tmp_path, monkeypatch):
    # The check itself: a module importing a package that is installed only as a dependency of a
    # declared one (sortedcontainers, under fakeredis) is reported.
    app = tmp_path / "app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "code.py").write_text("def f():\n    import sortedcontainers\n    from orjson import dumps\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert undeclared_imports() == ["app/code.py:2: imports sortedcontainers (sortedcontainers), not declared in pyproject.toml"]
