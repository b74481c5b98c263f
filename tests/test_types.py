"""The type check that `make lint` and `make test` run can fail.

mypy runs here on one small file only, with the project's configuration (the Django plugin
included); the whole tree is checked by `make test` before pytest starts.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CALLS = """\
import numpy as np

from annotation.ingest.kinematics import average_path
from annotation.models import Clip

track = np.zeros((16, 2))
average_path(track, smoothing_window=5)
average_path(track, smoothing_window="5")
Clip.objects.filter(no_such_field=1)
"""


def _mypy_errors(source: str, tmp_path: Path) -> dict[int, str]:
    path = tmp_path / "calls.py"
    path.write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 2: mypy itself failed
    errors = {}
    print(done.stdout)  # shown if the test fails
    for line in done.stdout.splitlines():
        # By file name: mypy's cache may report a file met before under its earlier folder.
        found = re.match(r".*\bcalls\.py:(\d+): error: (.*)", line)
        if found:
            errors[int(found.group(1))] = found.group(2)
    return errors


def test_mypy_reports_a_wrongly_typed_call_and_an_unknown_model_field(tmp_path: Path) -> None:
    errors = _mypy_errors(CALLS, tmp_path)
    assert 7 not in errors  # the well-typed call passes
    assert 'incompatible type "str"; expected "int"' in errors[8]
    assert "no_such_field" in errors[9]  # the Django plugin knows Clip's fields
    assert sorted(errors) == [8, 9]
