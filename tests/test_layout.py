"""The layout rules of ARCHITECTURE.md, checked by reading the imports."""

from __future__ import annotations

import ast
import importlib
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APPS = ("annotation", "datasets", "modeling", "frontend")
# An app may import only from apps to its left: annotation <- datasets <- modeling <- frontend.
ALLOWED = {app: set(APPS[: i + 1]) for i, app in enumerate(APPS)}
# The apps' plain modules that modeling.ml may import: the grades, the kinematics list and the
# exchange format's columns, the head sizes from the pixel size (no Django, no ORM; they import
# only each other and numpy).
PLAIN_CONSTANTS = {
    "annotation.grades",
    "annotation.ingest.kinematics",
    "annotation.exchange",
    "annotation.ingest.scale",  # the head size in px from the pixel size (the morphometry)
}


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


# --- annotation/ as subpackages; no import circles ------------------------------------------

PROJECT = (*APPS, "config", "simulator")
# The pure modules: plain inputs (numpy, OpenCV, pandas), no ORM, no Django at all.
PURE = {
    "annotation.grades",
    "annotation.exchange",
    "annotation.errors",
    "annotation.ingest.video_io",
    "annotation.ingest.tracking",
    "annotation.ingest.scale",
    "annotation.ingest.kinematics",
    "annotation.ingest.pipeline",
    "annotation.ingest.isolation",
    "annotation.ingest.candidates",
    "annotation.ingest.preview",
    "annotation.ingest.sandbox",
    "annotation.aggregation.distributions",
    "annotation.aggregation.agreement",
    "annotation.aggregation.rater_model",
    "annotation.aggregation.retirement",
    "datasets.splits",
    "datasets.diff",
    "datasets.datasheet",
    "datasets.export",
    "frontend.charts",
    "modeling.figures",
    "modeling.report",
}
DJANGO_SIDE = ("django", "rest_framework", "drf_spectacular", "celery", "config")
# Management commands that exist to seed demo data may use the simulator; nothing else may.
SIMULATOR_USERS = {"frontend.management.commands.seed_demo"}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {
        _module_name(path, root): path
        for top in PROJECT
        if (root / top).is_dir()
        for path in _python_files(root / top)
    }


def _imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports. Every import statement counts, function-local and
    TYPE_CHECKING ones too: a local import hides a circle from the interpreter, not from a
    reader, who still has to know both modules to understand either."""

    def longest_known(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(longest_known(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from annotation.grading import answers` imports annotation.grading.answers.
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else longest_known(node.module))
    own = {name for name, other in modules.items() if other == path}
    return found - own - {""}


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: _imported_modules(path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def _accepted(circle: list[str]) -> bool:
    """A services module and the tasks module of its app: tasks call the services, and the
    services send the tasks after their transaction commits (README, "What is where")."""
    if len(circle) != 2:
        return False
    tasks = [m for m in circle if m.endswith(".tasks")]
    services = [m for m in circle if m.endswith(".services")]
    return (
        len(tasks) == len(services) == 1
        and tasks[0].split(".")[0] == services[0].split(".")[0]
        and tasks[0] == tasks[0].split(".")[0] + ".tasks"
    )


def test_the_only_import_circles_are_services_and_their_tasks() -> None:
    circles = _circles(_import_graph(_project_modules()))
    assert [circle for circle in circles if not _accepted(circle)] == []
    assert ["annotation.ingest.services", "annotation.tasks"] in circles


def test_the_circle_check_catches_a_circle_and_accepts_only_services_and_tasks() -> None:
    graph = {
        "annotation.grading.answers": {"annotation.grading.repeats"},
        "annotation.grading.repeats": {"annotation.grading.answers"},
        "datasets.services": {"datasets.tasks"},
        "datasets.tasks": {"datasets.services"},
        "datasets.splits": set(),
    }
    circles = _circles(graph)
    assert circles == [
        ["annotation.grading.answers", "annotation.grading.repeats"],
        ["datasets.services", "datasets.tasks"],
    ]
    assert [_accepted(circle) for circle in circles] == [False, True]


def test_the_circle_check_counts_function_local_imports(tmp_path: Path) -> None:
    for name, body in (
        ("a", "def f():\n    from pkg import b\n"),
        ("b", "from pkg.a import f\n"),
    ):
        (tmp_path / "pkg").mkdir(exist_ok=True)
        (tmp_path / "pkg" / f"{name}.py").write_text(body)
    modules = {_module_name(p, tmp_path): p for p in (tmp_path / "pkg").glob("*.py")}
    graph = {name: _imported_modules(path, modules) for name, path in modules.items()}
    assert _circles(graph) == [["pkg.a", "pkg.b"]]


def test_a_vote_loads_no_pandas_scipy_or_krippendorff() -> None:
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "import annotation.grading.answers\n"
        "heavy = [m for m in ('pandas', 'scipy', 'krippendorff') if m in sys.modules]\n"
        "assert heavy == [], f'the vote write path loads {heavy}'\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def _crossings(modules: dict[str, Path], source: str, targets: tuple[str, ...]) -> list[str]:
    """`module imports target` for every module under `source` importing one under `targets`."""
    return [
        f"{name} imports {other}"
        for name, path in sorted(modules.items())
        if name == source or name.startswith(source + ".")
        for other in sorted(_imported_modules(path, modules))
        if any(other == t or other.startswith(t + ".") for t in targets)
    ]


def test_ingest_and_grading_never_import_each_other() -> None:
    modules = _project_modules()
    assert _crossings(modules, "annotation.ingest", ("annotation.grading",)) == []
    assert _crossings(modules, "annotation.grading", ("annotation.ingest",)) == []


def test_aggregation_imports_neither_ingest_nor_grading() -> None:
    modules = _project_modules()
    targets = ("annotation.ingest", "annotation.grading")
    assert _crossings(modules, "annotation.aggregation", targets) == []


def _fake_tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, body in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return {_module_name(p, tmp_path): p for p in tmp_path.rglob("*.py")}


def test_the_subpackage_checks_catch_a_crossing(tmp_path: Path) -> None:
    modules = _fake_tree(
        tmp_path,
        {
            "annotation/__init__.py": "",
            "annotation/ingest/__init__.py": "",
            "annotation/ingest/pipeline.py": "",
            "annotation/grading/__init__.py": "",
            "annotation/grading/answers.py": "from annotation.ingest import pipeline\n",
            "annotation/aggregation/__init__.py": "",
            "annotation/aggregation/selectors.py": "import annotation.grading.answers\n",
        },
    )
    assert _crossings(modules, "annotation.grading", ("annotation.ingest",)) == [
        "annotation.grading.answers imports annotation.ingest.pipeline"
    ]
    assert _crossings(modules, "annotation.aggregation", ("annotation.grading",)) == [
        "annotation.aggregation.selectors imports annotation.grading.answers"
    ]


def _impure(modules: dict[str, Path], pure: set[str]) -> list[str]:
    """Pure modules that import Django (or the settings, Celery, DRF) or a module not pure."""
    found = []
    for name in sorted(pure):
        path = modules[name]
        found += [
            f"{name}:{line} imports {module}"
            for line, module in _imports(path)
            if module.split(".")[0] in DJANGO_SIDE
        ]
        found += [
            f"{name} imports {other}"
            for other in sorted(_imported_modules(path, modules))
            if other not in pure and not other.startswith("modeling.ml")
        ]
    return found


def test_the_pure_modules_import_no_django() -> None:
    modules = _project_modules()
    assert set(modules) >= PURE
    assert _impure(modules, PURE) == []


def test_the_purity_check_catches_django_and_an_impure_neighbour(tmp_path: Path) -> None:
    modules = _fake_tree(
        tmp_path,
        {
            "annotation/__init__.py": "",
            "annotation/models.py": "",
            "annotation/grades.py": "def f():\n    from django.conf import settings\n",
            "annotation/aggregation/__init__.py": "",
            "annotation/aggregation/retirement.py": "from annotation.models import Clip\n",
        },
    )
    assert _impure(modules, {"annotation.grades", "annotation.aggregation.retirement"}) == [
        "annotation.aggregation.retirement imports annotation.models",
        "annotation.grades:2 imports django.conf",
    ]


def _simulator_users(modules: dict[str, Path]) -> list[str]:
    return [
        f"{name} imports {other}"
        for name, path in sorted(modules.items())
        if name.split(".")[0] in APPS or name.split(".")[0] == "config"
        for other in sorted(_imported_modules(path, modules))
        if other.split(".")[0] == "simulator"
    ]


def test_no_product_module_imports_the_simulator() -> None:
    users = _simulator_users(_project_modules())
    assert [u for u in users if u.split(" ")[0] not in SIMULATOR_USERS] == []
    assert users  # seed_demo does use it: the exception is still needed


def test_the_simulator_check_catches_a_product_module_using_it(tmp_path: Path) -> None:
    modules = _fake_tree(
        tmp_path,
        {
            "simulator/__init__.py": "",
            "simulator/panel.py": "",
            "datasets/__init__.py": "",
            "datasets/services.py": "def f():\n    from simulator.panel import Panel\n",
        },
    )
    assert _simulator_users(modules) == ["datasets.services imports simulator.panel"]


def test_the_celery_task_names_are_those_of_before_the_move() -> None:
    from config.celery import app

    app.loader.import_default_modules()
    assert sorted(name for name in app.tasks if not name.startswith("celery.")) == [
        "annotation.tasks.ingest_video",
        "annotation.tasks.make_first_frame",
        "annotation.tasks.prune_direct_uploads",
        "annotation.tasks.refit_rater_model",
        "annotation.tasks.verify_direct_upload",
        "datasets.tasks.build_dataset_version",
        "modeling.tasks.predict_new_clips",
        "modeling.tasks.run_grid_step",
        "modeling.tasks.train_run",
    ]


def test_every_periodic_task_of_the_beat_schedule_is_a_registered_task() -> None:
    from config.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "annotation.tasks.prune_direct_uploads" in scheduled
    assert scheduled <= set(app.tasks)


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
    # The practice page: a second post of the same grade shows its feedback, no error.
    second_post = [
        hit
        for hit in caught
        if hit.startswith("frontend/practice_views.py:")
        and hit.endswith(" practice.AlreadyGradedError")
    ]
    assert len(helper) == 1 and len(second_post) == 1
    assert sorted(caught) == sorted(helper + second_post)


def test_the_service_errors_module_imports_nothing_heavy() -> None:
    assert [module for _, module in _imports(ROOT / "annotation" / "errors.py")] == ["__future__"]


# --- pages call services and selectors, not API modules -------------------------------------


def _is_api_module(name: str) -> bool:
    last = name.rpartition(".")[2]
    return last == "api" or last.endswith("_api")


def _pages_importing_an_api(modules: dict[str, Path]) -> list[str]:
    """`page imports api` for every page module (frontend/, its commands aside) that imports
    an API module (`api.py`, `*_api.py`)."""
    return [
        f"{name} imports {other}"
        for name, path in sorted(modules.items())
        if name.startswith("frontend.") and not name.startswith("frontend.management")
        for other in sorted(_imported_modules(path, modules))
        if _is_api_module(other)
    ]


def test_no_page_module_imports_an_api_module() -> None:
    assert _pages_importing_an_api(_project_modules()) == []


def test_the_page_check_catches_a_page_importing_an_api_module(tmp_path: Path) -> None:
    modules = _fake_tree(
        tmp_path,
        {
            "datasets/__init__.py": "",
            "datasets/api.py": "",
            "datasets/services.py": "",
            "modeling/__init__.py": "",
            "modeling/practice_api.py": "",
            "frontend/__init__.py": "",
            "frontend/dataset_views.py": "from datasets import api, services\n",
            "frontend/practice_views.py": "def f():\n    from modeling.practice_api import X\n",
            "frontend/management/__init__.py": "",
        },
    )
    assert _pages_importing_an_api(modules) == [
        "frontend.dataset_views imports datasets.api",
        "frontend.practice_views imports modeling.practice_api",
    ]


# --- names in the README and in docstrings resolve ------------------------------------------

DOTTED = re.compile(
    r"(?<![\w./-])((?:annotation|datasets|modeling|simulator|frontend)(?:\.[A-Za-z_]\w*)+)"
)
FILE_PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w.-]+\.(?:py|js|css|html|md|toml))(?![\w/])")
SUFFIXES = {"py", "js", "css", "html", "md", "toml", "csv", "json", "txt"}
SKIPPED = {".venv", ".git", "var", "node_modules", ".ruff_cache", ".mypy_cache"}


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _dotted_resolves(dotted: str, root: Path) -> bool:
    """`a.b.c` names a module or package under root, or a top-level name of one (the rest
    after that name, an attribute such as `Video.Status.READY`, is not followed)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:i])
        module = (
            base.with_suffix(".py") if not (base / "__init__.py").exists() else base / "__init__.py"
        )
        if module.exists():
            return (
                i == len(parts)
                or parts[i] in _top_level_names(module)
                or ((base / parts[i]).is_dir())
            )
    return False


def _path_resolves(mention: str, root: Path) -> bool:
    if not (root / mention.split("/")[0]).is_dir():
        return True  # not a path of this repository (an anchor's, a placeholder like DIR/)
    if (root / mention).exists():
        return True
    # A template or static file named as Django finds it: frontend/_player.html.
    return any(root.glob(f"*/templates/{mention}")) or any(root.glob(f"*/static/{mention}"))


def _comments(source: str) -> list[str]:
    return [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]


def _texts(root: Path) -> list[tuple[str, str]]:
    """(file, text) for every .md file, and every docstring and comment of every .py file,
    under root."""
    found = []
    for path in sorted(root.rglob("*")):
        if SKIPPED & set(path.relative_to(root).parts) or not path.is_file():
            continue
        where = str(path.relative_to(root))
        if path.suffix == ".md":
            found.append((where, path.read_text()))
        elif path.suffix == ".py":
            source = path.read_text()
            found += [(where, comment) for comment in _comments(source)]
            for node in ast.walk(ast.parse(source, filename=str(path))):
                if isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                ) and (doc := ast.get_docstring(node, clean=False)):
                    found.append((where, doc))
    return found


def _stale_names(root: Path) -> list[str]:
    stale = []
    for where, text in _texts(root):
        for dotted in DOTTED.findall(text):
            if dotted.rpartition(".")[2] in SUFFIXES:
                continue  # a file name such as poller.js, checked as a path below
            if not _dotted_resolves(dotted, root):
                stale.append(f"{where}: {dotted}")
        stale += [f"{where}: {m}" for m in FILE_PATH.findall(text) if not _path_resolves(m, root)]
    return sorted(set(stale))


def test_every_module_and_file_named_in_the_readme_and_in_docstrings_exists() -> None:
    assert _stale_names(ROOT) == []


def test_the_name_check_catches_a_stale_module_a_stale_name_and_a_stale_path(
    tmp_path: Path,
) -> None:
    _fake_tree(
        tmp_path,
        {
            "datasets/__init__.py": "",
            "datasets/practice.py": '"""Scores: see datasets.practice.clip_score."""\n'
            "def clip_score():\n    pass\n",
            "modeling/__init__.py": '"""Runs; the trainee API is modeling.practice_api."""\n',
        },
    )
    (tmp_path / "README.md").write_text(
        "Practice lives in `datasets/practice.py` and `datasets.practice`; the old\n"
        "`datasets/training.py`, `datasets.training` and `datasets.practice.training_set_create`\n"
        "are gone. DIR/clips.csv and healthchecks' static/js/poller.js are not ours to check.\n"
    )
    assert _stale_names(tmp_path) == [
        "README.md: datasets.practice.training_set_create",
        "README.md: datasets.training",
        "README.md: datasets/training.py",
        "modeling/__init__.py: modeling.practice_api",
    ]
