"""Outer folds and inner train/val splits of a dataset version (datasets.splits)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from annotation.grades import GRADES
from datasets.splits import FoldAssignment, assign_folds


def _one_clip_per_patient(n: int = 60, *, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """n clips, modes spread evenly over A..E in a shuffled order, one patient each."""
    modes = list(np.random.default_rng(seed).permutation([GRADES[i % 5] for i in range(n)]))
    return [f"c{i:03d}" for i in range(n)], modes, [f"p{i:03d}" for i in range(n)]


def _several_clips_per_patient() -> tuple[list[str], list[str], list[str]]:
    """45 clips of 15 patients (1 to 5 clips each), skewed towards B and C like real data."""
    rng = np.random.default_rng(7)
    clips, modes, patients = [], [], []
    for patient in range(15):
        for _ in range(1 + patient % 5):
            clips.append(f"c{len(clips):03d}")
            modes.append(str(rng.choice(list(GRADES), p=[0.1, 0.35, 0.35, 0.15, 0.05])))
            patients.append(f"p{patient:02d}")
    return clips, modes, patients


def _patients_by_fold(fa: FoldAssignment, patient_of: dict[str, str]) -> dict[int, set[str]]:
    by_fold: dict[int, set[str]] = {}
    for clip_id, fold in fa.folds.items():
        by_fold.setdefault(fold, set()).add(patient_of[clip_id])
    return by_fold


def test_no_patient_is_in_two_folds() -> None:
    clips, modes, patients = _several_clips_per_patient()
    fa = assign_folds(clips, modes, patients, n_folds=3, seed=1)
    by_fold = _patients_by_fold(fa, dict(zip(clips, patients, strict=True)))
    assert sorted(by_fold) == [0, 1, 2]
    assert sum(len(p) for p in by_fold.values()) == len(set(patients))
    assert set(fa.folds) == set(clips)


def test_inner_val_shares_no_patient_with_inner_train_and_never_holds_a_test_clip() -> None:
    clips, modes, patients = _several_clips_per_patient()
    patient_of = dict(zip(clips, patients, strict=True))
    fa = assign_folds(clips, modes, patients, n_folds=3, seed=2)
    for fold in range(3):
        rows = [(clip_id, subset) for k, clip_id, subset in fa.inner if k == fold]
        train = {patient_of[c] for c, s in rows if s == "train"}
        val = {patient_of[c] for c, s in rows if s == "val"}
        assert train and val and not train & val
        # The inner split covers exactly the outer training part.
        assert {c for c, _ in rows} == {c for c, f in fa.folds.items() if f != fold}


def test_the_same_seed_repeats_the_folds_and_another_seed_changes_them() -> None:
    clips, modes, patients = _one_clip_per_patient()
    first = assign_folds(clips, modes, patients, seed=3)
    again = assign_folds(clips, modes, patients, seed=3)
    other = assign_folds(clips, modes, patients, seed=4)
    assert first.folds == again.folds and first.inner == again.inner
    assert first.folds != other.folds


def test_the_input_order_does_not_change_the_folds() -> None:
    clips, modes, patients = _several_clips_per_patient()
    order = np.random.default_rng(0).permutation(len(clips))
    shuffled = assign_folds(
        [clips[i] for i in order], [modes[i] for i in order], [patients[i] for i in order], seed=5
    )
    assert shuffled == assign_folds(clips, modes, patients, seed=5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_each_grade_mode_is_spread_across_folds_within_one_clip(seed: int) -> None:
    clips, modes, patients = _one_clip_per_patient(seed=seed)
    table = assign_folds(clips, modes, patients, seed=seed).balance_table()
    spread = table[list(GRADES)].max() - table[list(GRADES)].min()
    assert (spread <= 1).all(), table


def test_the_inner_validation_share_follows_the_requested_fraction() -> None:
    clips, modes, patients = _one_clip_per_patient()
    fa = assign_folds(clips, modes, patients, inner_val_fraction=0.25)
    for fold in range(3):
        subsets = [s for k, _, s in fa.inner if k == fold]
        assert subsets.count("val") == 10 and subsets.count("train") == 30


def test_balance_table_counts_every_clip_by_fold_and_grade_mode() -> None:
    clips, modes, patients = _one_clip_per_patient(n=30)
    table = assign_folds(clips, modes, patients).balance_table()
    assert list(table.columns) == [*GRADES, "total"]
    assert list(table.index) == [0, 1, 2]
    assert table["total"].sum() == 30
    assert table[list(GRADES)].sum().to_dict() == {g: 6 for g in GRADES}


def test_fewer_patients_than_folds_is_refused_with_the_counts() -> None:
    with pytest.raises(ValueError, match=r"3 folds need at least 3 patients.*has 2 patient\(s\)"):
        assign_folds(["a", "b", "c"], ["A", "B", "C"], ["p1", "p1", "p2"], n_folds=3)


def test_a_grade_mode_with_a_single_clip_is_fine_and_raises_no_warning() -> None:
    clips, modes, patients = _one_clip_per_patient(n=30)
    modes[0] = "E"  # make E rare: one clip
    modes = [m if m != "E" or i == 0 else "B" for i, m in enumerate(modes)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = assign_folds(clips, modes, patients).balance_table()
    assert table["E"].sum() == 1


def test_a_tiny_selection_with_every_class_rarer_than_the_folds_still_splits() -> None:
    fa = assign_folds(["a", "b", "c", "d"], ["A", "B", "C", "D"], ["p1", "p2", "p3", "p4"])
    assert sorted(fa.balance_table()["total"]) == [1, 1, 2]
    assert all(s in ("train", "val") for _, _, s in fa.inner)


def test_a_mode_outside_a_to_e_is_refused() -> None:
    with pytest.raises(ValueError, match=r"A\.\.E; got F"):
        assign_folds(["a", "b", "c"], ["A", "F", "C"], ["p1", "p2", "p3"])


def test_split_tables_match_the_export_columns() -> None:
    clips, modes, patients = _one_clip_per_patient(n=15)
    fa = assign_folds(clips, modes, patients)
    assert list(fa.splits_frame().columns) == ["clip_id", "fold"]
    assert list(fa.inner_frame().columns) == ["outer_fold", "clip_id", "subset"]
    assert len(fa.inner_frame()) == 2 * len(clips)  # each clip trains in the other two folds
