"""The layout rules of ARCHITECTURE.md, checked by reading the imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("annotation", "datasets", "modeling", "frontend")
# An app may import only from apps to its left: annotation <- datasets <- modeling <- frontend.
ALLOWED = {app: set(APPS[: i + 1]) for i, app in enumerate(APPS)}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _python_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.py") if "migrations" not in p.parts]


def test_apps_import_only_from_apps_to_their_left() -> None:
    backwards = []
    for app in APPS:
        for path in _python_files(ROOT / app):
            for line, module in _imports(path):
                top = module.split(".")[0]
                if top in APPS and top not in ALLOWED[app]:
                    backwards.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert backwards == []


def test_modeling_ml_imports_nothing_from_django_or_the_apps() -> None:
    offending = []
    for path in _python_files(ROOT / "modeling" / "ml"):
        for line, module in _imports(path):
            top = module.split(".")[0]
            plain_constants = module == "annotation.grades"
            if top in ("django", "rest_framework", "celery", "config") or (
                top in APPS and not plain_constants and not module.startswith("modeling.ml")
            ):
                offending.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offending == []


def test_modeling_ml_loads_without_django_settings() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys, pkgutil, importlib, modeling.ml as m\n"
        "for info in pkgutil.iter_modules(m.__path__):\n"
        "    importlib.import_module('modeling.ml.' + info.name)\n"
        "assert 'django.conf' not in sys.modules, 'modeling.ml pulled in Django'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_the_layout_check_catches_a_backwards_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from frontend.views import home\n")
    modules = [m for _, m in _imports(bad)]
    assert "frontend.views" in modules and "frontend" not in ALLOWED["annotation"]
