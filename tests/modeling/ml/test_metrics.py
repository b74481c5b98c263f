"""The evaluation metrics (modeling.ml.metrics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from annotation.aggregation.distributions import grade_mode_index as votes_grade_mode_index
from modeling.ml.metrics import evaluate_distributions, grade_mode_index


def _random(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = np.array([rng.multinomial(40, rng.dirichlet(np.ones(5) * 0.5)) for _ in range(n)])
    p_true = counts / counts.sum(axis=1, keepdims=True)
    p_pred = rng.dirichlet(np.ones(5), size=n)
    return p_true, p_pred


def test_a_perfect_prediction_scores_perfectly() -> None:
    p = np.array([[1.0, 0, 0, 0, 0], [0, 0.25, 0.75, 0, 0], [0, 0, 0, 0.5, 0.5]])
    result = evaluate_distributions(p, p)
    assert result["n"] == 3
    for key in ("emd", "mse", "jsd"):
        assert result[key] == pytest.approx(0.0, abs=1e-12)
    for key in ("hi", "macro_hi", "mode_accuracy", "macro_f1", "top25_hi", "top75_hi"):
        assert result[key] == pytest.approx(1.0)
    assert set(result["per_class"]) == {"A", "C", "D"}


def test_histogram_intersection_and_losses_of_a_hand_example() -> None:
    p_true = np.array([[0.5, 0.5, 0, 0, 0]])
    p_pred = np.array([[0, 0.5, 0.5, 0, 0]])
    result = evaluate_distributions(p_true, p_pred)
    assert result["hi"] == pytest.approx(0.5)
    assert result["emd"] == pytest.approx(2 * 0.5**2)  # the CDFs differ by 0.5 at A and B
    assert result["mse"] == pytest.approx((0.25 + 0.25) / 5)
    # Ties halfway: the truth's mode is A (mean 1.5), the prediction's B (mean 2.5).
    assert result["mode_accuracy"] == 0.0


def test_every_metric_matches_loops_overall_and_per_grade_mode_class() -> None:
    p_true, p_pred = _random(60, seed=4)
    result = evaluate_distributions(p_true, p_pred)

    true_mode = grade_mode_index(p_true)
    pred_mode = grade_mode_index(p_pred)
    hi = [
        sum(min(a, b) for a, b in zip(t, q, strict=True))
        for t, q in zip(p_true, p_pred, strict=True)
    ]
    assert result["hi"] == pytest.approx(sum(hi) / len(hi))
    assert result["mode_accuracy"] == pytest.approx(np.mean(true_mode == pred_mode))
    present = sorted(set(true_mode.tolist()))
    assert result["macro_f1"] == pytest.approx(
        f1_score(true_mode, pred_mode, labels=present, average="macro", zero_division=0)
    )

    class_hi = {}
    for grade in present:
        members = [h for h, m in zip(hi, true_mode, strict=True) if m == grade]
        class_hi[grade] = sum(members) / len(members)
        per_class = result["per_class"]["ABCDE"[grade]]
        assert per_class["n"] == len(members)
        assert per_class["hi"] == pytest.approx(class_hi[grade])
        ranked = sorted(members, reverse=True)
        for key, fraction in (("top25_hi", 0.25), ("top50_hi", 0.5), ("top75_hi", 0.75)):
            best = ranked[: max(1, math.ceil(fraction * len(ranked)))]
            assert per_class[key] == pytest.approx(sum(best) / len(best))
        assert (
            per_class["top25_hi"]
            >= per_class["top50_hi"]
            >= per_class["top75_hi"]
            >= per_class["hi"]
        )
    assert result["macro_hi"] == pytest.approx(sum(class_hi.values()) / len(class_hi))
    assert result["top50_hi"] == pytest.approx(
        np.mean([result["per_class"]["ABCDE"[g]]["top50_hi"] for g in present])
    )


def test_top_hi_takes_the_best_quarter_half_and_three_quarters_of_each_class() -> None:
    hi = np.array([0.9, 0.8, 0.7, 0.6, 0.5])  # all clips' true mode is A
    p_true = np.tile([1.0, 0, 0, 0, 0], (5, 1))
    p_pred = np.stack([hi, 1 - hi, 0 * hi, 0 * hi, 0 * hi], axis=1)
    result = evaluate_distributions(p_true, p_pred)
    assert result["top25_hi"] == pytest.approx((0.9 + 0.8) / 2)  # ceil(1.25) = 2 clips
    assert result["top50_hi"] == pytest.approx((0.9 + 0.8 + 0.7) / 3)  # ceil(2.5) = 3
    assert result["top75_hi"] == pytest.approx((0.9 + 0.8 + 0.7 + 0.6) / 4)  # ceil(3.75) = 4
    assert result["per_class"]["A"]["mode_accuracy"] == 1.0  # 0.5 on A and B: A, the better


def test_a_tied_grade_mode_goes_to_the_grade_nearest_the_mean_then_the_better_one() -> None:
    p = np.array(
        [
            [0.4, 0.0, 0.4, 0.2, 0.0],  # A and C tie, mean 2.4: C is nearer
            [0.5, 0.5, 0.0, 0.0, 0.0],  # mean 1.5 halfway: the better grade, A
            [0.0, 0.3, 0.1, 0.3, 0.3],  # B, D, E tie, mean 3.8: D
        ]
    )
    assert grade_mode_index(p).tolist() == [2, 0, 3]


def test_grade_modes_of_vote_fractions_agree_with_the_vote_count_rule() -> None:
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 4, size=(500, 5))  # small counts: many ties
    counts[counts.sum(axis=1) == 0, 2] = 1
    p = counts / counts.sum(axis=1, keepdims=True)
    assert grade_mode_index(p).tolist() == votes_grade_mode_index(counts).tolist()


def test_results_are_plain_json() -> None:
    p_true, p_pred = _random(10, seed=1)
    result = evaluate_distributions(p_true, p_pred)
    assert json.loads(json.dumps(result)) == result


def test_arrays_that_are_not_grade_distributions_are_refused() -> None:
    good = np.array([[0.2, 0.2, 0.2, 0.2, 0.2]])
    with pytest.raises(ValueError, match="shape"):
        evaluate_distributions(good[:, :4], good[:, :4])
    with pytest.raises(ValueError, match="sum to 1"):
        evaluate_distributions(good, good * 2)
    with pytest.raises(ValueError, match="N >= 1"):
        evaluate_distributions(good[:0], good[:0])
