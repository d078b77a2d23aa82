"""The client package is installable on its own: it imports neither Django nor any Orchestrio
app (checked on its source, so a lazy import inside a function is caught too), and it imports
with only its own directory on the path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "client" / "orchestrio_client"
APPS = {path.parent.name for path in ROOT.glob("*/apps.py")} | {"orchestrio"}  # every Django app of the repository
FORBIDDEN = {"django", "rest_framework", "drf_spectacular", "tests"} | APPS
ALLOWED = {"httpx", "click", "mcp", "uvicorn", "orchestrio_client"}


def test_no_import_of_the_control_plane():
    assert {"instances", "fleet", "billing"} <= APPS
    stdlib = set(sys.stdlib_module_names)
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                assert top in stdlib or top in ALLOWED, f"{path.name} imports {name}: not a dependency of client/pyproject.toml"


def test_imports_with_only_its_own_directory():
    code = (
        "import sys, orchestrio_client, orchestrio_client.cli;"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)})
