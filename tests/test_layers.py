"""The layers of docs/architecture.md hold: import-linter checks the contracts of pyproject.toml
([tool.importlinter]) against the real import graph, and no app imports another inside a function
(where a cycle hides) unless a comment says why."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from django.apps import apps
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_app_of_the_project_is_in_a_layer():
    """A new app cannot escape the contracts: the linter's packages are this repository's apps."""
    ours = {config.name for config in apps.get_app_configs() if Path(config.path).parent == ROOT}
    assert set(CONFIG["root_packages"]) == ours
    (layers,) = [contract["layers"] for contract in CONFIG["contracts"] if contract["type"] == "layers" and "containers" not in contract]
    assert {app.strip() for layer in layers for app in layer.split("|")} == ours
    # INSTALLED_APPS lists them in layer order (lowest first): the order their hooks register in.
    installed = [name.split(".")[0] for name in settings.INSTALLED_APPS if name.split(".")[0] in ours]
    ranks = {app.strip(): rank for rank, layer in enumerate(reversed(layers)) for app in layer.split("|")}
    assert [ranks[app] for app in installed] == sorted(ranks[app] for app in installed), installed


def test_every_app_built_on_the_core_keeps_its_rooms():
    """The inner contract (HTTP on services on selectors on models) covers every app but the core."""
    ours = {config.name for config in apps.get_app_configs() if Path(config.path).parent == ROOT}
    (containers,) = [contract["containers"] for contract in CONFIG["contracts"] if "containers" in contract]
    assert set(containers) == ours - {"orchestrio"}


def function_level_imports_between_apps(root: Path, packages: set[str]) -> list[str]:
    """`path:line` of each import of another app made inside a function, other than in an
    `AppConfig.ready` (where Django wants them: the models are not loaded when apps.py is) and
    other than those with a comment on their line or the line above saying why."""
    found = []
    for package in sorted(packages):
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = path.read_text()
            lines = source.splitlines()
            tree = ast.parse(source)
            for function in ast.walk(tree):
                if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if path.name == "apps.py" and function.name == "ready":
                    continue
                for node in ast.walk(function):
                    if isinstance(node, ast.ImportFrom) and not node.level:
                        modules = [node.module]
                    elif isinstance(node, ast.Import):
                        modules = [alias.name for alias in node.names]
                    else:
                        continue
                    if not any(m.split(".")[0] in packages and m.split(".")[0] != package for m in modules):
                        continue
                    line, above = lines[node.lineno - 1], lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                    if "#" in line or above.startswith("#"):
                        continue
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return sorted(set(found))


def test_no_uncommented_function_level_import_between_apps():
    found = function_level_imports_between_apps(ROOT, set(CONFIG["root_packages"]))
    assert found == [], "import at module level, or say in a comment why it cannot be: " + ", ".join(found)


def test_the_scan_finds_a_function_level_import(tmp_path):
    """The scan itself: it sees a hidden import, and lets a commented one and a ready() one be."""
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    (tmp_path / "low" / "services.py").write_text(
        "def hidden():\n    from high.models import Thing\n\n\n"
        "def explained():\n    # high imports low at module level: a cycle otherwise\n    from high import models\n"
    )
    (tmp_path / "low" / "apps.py").write_text("class Config:\n    def ready(self):\n        from high import hooks\n")
    assert function_level_imports_between_apps(tmp_path, {"low", "high"}) == ["low/services.py:2"]
