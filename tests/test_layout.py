"""The layout rules of ARCHITECTURE.md, checked by reading the imports."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APPS = ("annotation", "datasets", "modeling", "frontend")
# An app may import only from apps to its left: annotation <- datasets <- modeling <- frontend.
ALLOWED = {app: set(APPS[: i + 1]) for i, app in enumerate(APPS)}
# The apps' plain modules that modeling.ml may import: the grades, the kinematics list and the
# exchange format's columns (no Django, no ORM; they import only each other and numpy).
PLAIN_CONSTANTS = {"annotation.grades", "annotation.kinematics", "annotation.exchange"}


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
            plain_constants = module in PLAIN_CONSTANTS
            if top in ("django", "rest_framework", "celery", "config") or (
                top in APPS and not plain_constants and not module.startswith("modeling.ml")
            ):
                offending.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offending == []


def test_the_plain_constants_modules_import_no_django_and_no_other_app_module() -> None:
    offending = []
    for module in sorted(PLAIN_CONSTANTS):
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        for line, imported in _imports(path):
            top = imported.split(".")[0]
            if top in ("django", "rest_framework", "celery", "config", "pandas", "torch") or (
                top in APPS and imported not in PLAIN_CONSTANTS
            ):
                offending.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
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


# --- errors mapped once: annotation.api_errors answers service errors, pages use one helper --


def _resolved(namespace: dict[str, Any], node: ast.expr) -> object:
    """The object an except clause's name (`ServiceError`, `services.DatasetError`) means."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolved(namespace, node.value)
        return getattr(base, node.attr, None)
    return None


def _service_errors_caught(path: Path) -> list[str]:
    """`path:line name` for every except clause of the module that catches a ServiceError."""
    from annotation.errors import ServiceError

    module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    namespace = vars(importlib.import_module(module_name))
    caught = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        for name in names:
            error = _resolved(namespace, name)
            if isinstance(error, type) and issubclass(error, ServiceError):
                caught.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(name)}")
    return caught


def test_no_api_view_module_catches_a_service_error_itself() -> None:
    api_modules = [
        path
        for app in APPS
        for path in _python_files(ROOT / app)
        if path.name == "api.py" or path.name.endswith("_api.py")
    ]
    assert len(api_modules) >= 6  # annotation, field guide, grading, datasets, modeling, ...
    assert [hit for path in api_modules for hit in _service_errors_caught(path)] == []


def test_pages_show_service_errors_through_the_one_helper_only() -> None:
    caught = [
        hit for path in _python_files(ROOT / "frontend") for hit in _service_errors_caught(path)
    ]
    helper = [hit for hit in caught if hit.startswith("frontend/refusals.py:")]
    # The trainee page: a second post of the same grade shows its feedback, no error.
    second_post = [
        hit
        for hit in caught
        if hit.startswith("frontend/feedback_views.py:")
        and hit.endswith(" training.AlreadyGradedError")
    ]
    assert len(helper) == 1 and len(second_post) == 1
    assert sorted(caught) == sorted(helper + second_post)


def test_the_service_errors_module_imports_nothing_heavy() -> None:
    assert [module for _, module in _imports(ROOT / "annotation" / "errors.py")] == ["__future__"]
