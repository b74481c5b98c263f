"""The datasheet of an export (datasets.datasheet) and the diff of two versions (datasets.diff)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotation.aggregation.distributions import distribution_stats, figure3_stats
from annotation.grades import GRADES, PROB_COLUMNS
from datasets.datasheet import render_datasheet
from datasets.diff import diff_versions


def _balance() -> pd.DataFrame:
    table = pd.DataFrame([[1, 4, 3, 1, 0], [2, 3, 3, 1, 0]], columns=list(GRADES))
    table.index.name = "fold"
    table["total"] = table.sum(axis=1)
    return table


def _datasheet(*, reverse: bool = False) -> str:
    def ordered(mapping: dict[str, object]) -> dict[str, object]:
        return dict(reversed(mapping.items())) if reverse else mapping

    return render_datasheet(
        name="MERSV demo v1",
        content_hash_note="",
        counts=ordered({"clips": 18, "patients": 18, "ratings": 720, "raters": 40}),
        figure3=ordered(
            {
                "grade_mode_counts": ordered({"A": 3, "B": 7, "C": 6, "D": 2, "E": 0}),
                "mean_score": ordered({"mean": 2.6123456, "sd": 0.5}),
            }
        ),
        agreement=ordered(
            {
                "krippendorff_alpha": ordered(
                    {
                        "alpha": 0.41234,
                        "ci_low": 0.38,
                        "ci_high": 0.4456,
                        "confidence": 0.9,
                        "n_resamples": 1000,
                    }
                ),
                "fleiss_kappa": 0.3,
            }
        ),
        fold_balance=_balance(),
        filters=ordered({"min_ratings": 30, "exclude_retired": False}),
        generation=ordered({"seed": 0, "n_folds": 2, "inner_val_fraction": 0.2}),
        licence="CC BY-NC 4.0",
    )


def test_the_datasheet_does_not_depend_on_the_order_of_its_inputs() -> None:
    assert _datasheet() == _datasheet(reverse=True)


def test_the_datasheet_says_how_to_compute_the_content_hash() -> None:
    text = _datasheet()
    assert "SHA-256 of `MANIFEST.sha256`" in text
    assert "sha256sum -c MANIFEST.sha256" in text


def test_the_datasheet_shows_agreement_with_its_interval_and_the_fold_balance() -> None:
    text = _datasheet()
    assert "| krippendorff alpha | 0.4123 | 90% CI 0.38 .. 0.4456 | n_resamples=1000 |" in text
    assert "| fleiss kappa | 0.3 |  |  |" in text
    assert "| fold | A | B | C | D | E | total |" in text
    assert "| 1 | 2 | 3 | 3 | 1 | 0 | 9 |" in text
    assert "- grade mode counts: A=3, B=7, C=6, D=2, E=0" in text
    assert "  - mean: 2.612" in text
    assert "- exclude retired: no" in text
    assert text.endswith("CC BY-NC 4.0\n")


def test_the_joint_mean_std_histogram_of_figure3_becomes_a_table() -> None:
    # Two clips: all votes on B (mean 2, std 0) and half A, half C (mean 2, std 1).
    figure3 = figure3_stats(distribution_stats(np.array([[0, 4, 0, 0, 0], [2, 0, 2, 0, 0]])))
    text = render_datasheet(
        name="v",
        content_hash_note="",
        counts={},
        figure3=figure3,
        agreement={},
        fold_balance=_balance(),
        filters={},
        generation={},
        licence="",
    )
    header = next(line for line in text.splitlines() if line.startswith("| mean / std |"))
    assert header.startswith("| mean / std | 0..0.125 | 0.125..0.25 |")
    row = next(line for line in text.splitlines() if line.startswith("| 2..2.25 |"))
    cells = row.strip("|").split("|")[1:]
    assert [c.strip() for c in cells].count("1") == 2  # std bins 0..0.125 and 1..1.125
    assert "- votes per grade: A=2, B=4, C=2, D=0, E=0" in text


def _distributions(rows: dict[str, list[float]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(PROB_COLUMNS))
    return frame.rename_axis("clip_id").reset_index()


def test_diff_lists_added_removed_and_changed_clips_by_emd() -> None:
    a = _distributions(
        {
            "c1": [1, 0, 0, 0, 0],
            "c2": [0, 1, 0, 0, 0],
            "c3": [0.2, 0.2, 0.2, 0.2, 0.2],
            "c5": [0, 0, 0, 0, 1],
        }
    )
    b = _distributions(
        {
            "c1": [0, 0, 1, 0, 0],  # CDFs differ by 1 at A and B: EMD 2
            "c2": [0, 0, 1, 0, 0],  # CDFs differ by 1 at B: EMD 1
            "c3": [0.2, 0.2, 0.2, 0.2, 0.2],
            "c4": [0, 1, 0, 0, 0],
        }
    )
    diff = diff_versions(a, b)
    assert diff.added == ["c4"]
    assert diff.removed == ["c5"]
    assert [(c.clip_id, c.emd) for c in diff.changed] == [("c1", 2.0), ("c2", 1.0)]
    assert diff.unchanged == 1
    assert diff.changed_frame().loc[0, "b_p_C"] == 1.0


def test_a_distribution_shift_within_float_noise_is_not_a_change() -> None:
    third = 1 / 3
    assert 1 - 2 * third != third  # the same distribution, normalised another way
    a = _distributions({"c1": [third, third, third, 0, 0]})
    b = _distributions({"c1": [third, third, 1 - 2 * third, 0, 0]})
    diff = diff_versions(a, b)
    assert diff.changed == [] and diff.unchanged == 1


def test_a_clip_listed_twice_is_refused() -> None:
    a = pd.concat([_distributions({"c1": [1, 0, 0, 0, 0]})] * 2)
    with pytest.raises(ValueError, match="twice: c1"):
        diff_versions(a, _distributions({"c1": [1, 0, 0, 0, 0]}))
