"""python manage.py evaluate_predictions: the metrics as JSON, and clear errors for bad tables."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

HEADER = "clip_id,p_A,p_B,p_C,p_D,p_E\n"


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def _run(true: Path, pred: Path) -> dict:
    out = io.StringIO()
    call_command("evaluate_predictions", str(true), str(pred), stdout=out)
    return json.loads(out.getvalue())


def test_identical_tables_score_perfectly_whatever_the_row_order(tmp_path: Path) -> None:
    rows = ["c1,0.1,0.6,0.3,0,0", "c2,0,0,0.2,0.3,0.5", "c3,1,0,0,0,0"]
    true = _write(tmp_path / "true.csv", rows)
    pred = _write(tmp_path / "pred.csv", list(reversed(rows)))
    metrics = _run(true, pred)
    assert metrics["n"] == 3
    assert metrics["emd"] == pytest.approx(0.0)
    assert metrics["hi"] == pytest.approx(1.0)
    assert metrics["mode_accuracy"] == pytest.approx(1.0)
    assert set(metrics["per_class"]) == {"A", "B", "E"}


def test_all_mass_on_a_against_all_mass_on_e_gives_emd_4(tmp_path: Path) -> None:
    metrics = _run(
        _write(tmp_path / "t.csv", ["c1,1,0,0,0,0"]), _write(tmp_path / "p.csv", ["c1,0,0,0,0,1"])
    )
    assert metrics["emd"] == pytest.approx(4.0)
    assert metrics["hi"] == pytest.approx(0.0)
    assert metrics["mode_accuracy"] == 0.0


@pytest.mark.parametrize(
    ("pred_rows", "message"),
    [
        (["c1,1,0,0,0,0"], "1 clip(s) without a prediction: c2"),
        (["c1,1,0,0,0,0", "c2,0,1,0,0,0", "c9,0,1,0,0,0"], "prediction(s) for unknown clip(s): c9"),
        (["c1,0.5,0.5,0.1,0,0", "c2,0,1,0,0,0"], "line 2: probabilities of clip c1 sum to 1.1"),
        (["c1,1.2,-0.2,0,0,0", "c2,0,1,0,0,0"], "line 2: negative probability in clip c1"),
        (["c1,1,0,0,0,0", "c2,0,one,0,0,0"], "line 3: p_A..p_E must be numbers"),
    ],
)
def test_a_bad_prediction_table_gets_a_clear_error(
    tmp_path: Path, pred_rows: list[str], message: str
) -> None:
    true = _write(tmp_path / "true.csv", ["c1,1,0,0,0,0", "c2,0,1,0,0,0"])
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run(true, _write(tmp_path / "pred.csv", pred_rows))


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("clip_id,p_A,p_B\nc1,1,0\n")
    true = _write(tmp_path / "t.csv", ["c1,1,0,0,0,0"])
    with pytest.raises(CommandError, match=r"line 1: missing column\(s\) p_C, p_D, p_E"):
        _run(true, tmp_path / "p.csv")
