"""Trainee scores and triage order on hand-worked examples (pure functions, no database)."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.practice import clip_score, performance
from modeling.feedback import triage_order


def test_a_clip_score_is_the_share_of_experts_and_the_signed_distance_to_the_mean() -> None:
    # Mean score 0.5*1 + 0.25*2 + 0.25*3 = 1.75; grading C (3) is 1.25 grades harsher.
    score = clip_score([0.5, 0.25, 0.25, 0.0, 0.0], "C")
    assert score.share == pytest.approx(0.25)
    assert score.deviation == pytest.approx(1.25)
    assert score.panel_mean == pytest.approx(1.75)
    assert score.panel_grade == "B"  # 1.75 rounds to 2


def test_a_lenient_grade_has_a_negative_distance_and_half_rounds_up() -> None:
    score = clip_score([0.0, 0.0, 0.5, 0.5, 0.0], "A")  # mean 3.5 -> panel grade D
    assert score.share == 0.0
    assert score.deviation == pytest.approx(-2.5)
    assert score.panel_grade == "D"


def test_performance_over_clips_on_a_hand_worked_example() -> None:
    # Three clips with panel grades A, C, E (one-hot panels); the trainee says A, D, E.
    p = np.eye(5)[[0, 2, 4]]
    result = performance(np.array([0, 3, 4]), p)
    assert result.n == 3
    assert result.mean_share == pytest.approx(2 / 3)  # shares 1, 0, 1
    assert result.tendency == pytest.approx(1 / 3)  # deviations 0, +1, 0
    assert result.confusion[3][2] == 1 and result.confusion[0][0] == 1
    assert sum(map(sum, result.confusion)) == 3
    # Quadratic kappa by hand: observed sum w = 1 (one cell one step off);
    # chance pairs every trainee grade {A,D,E} with every panel grade {A,C,E}:
    # expected = (0+4+16 + 9+1+1 + 16+4+0) / 3 = 17.
    assert result.kappa == pytest.approx(1 - 1 / 17)


def test_performance_without_grades_has_no_figures() -> None:
    result = performance(np.array([], dtype=int), np.zeros((0, 5)))
    assert result.n == 0 and result.kappa is None and result.mean_share is None


def test_triage_order_ranks_by_p_a_plus_p_b_then_p_a_then_clip_id() -> None:
    predictions = [
        (7, [0.1, 0.2, 0.3, 0.2, 0.2]),  # A+B 0.3
        (3, [0.3, 0.3, 0.2, 0.1, 0.1]),  # A+B 0.6, A 0.3
        (5, [0.4, 0.2, 0.2, 0.1, 0.1]),  # A+B 0.6, A 0.4: beats clip 3
        (9, [0.05, 0.05, 0.1, 0.3, 0.5]),  # A+B 0.1
        (2, [0.3, 0.3, 0.2, 0.1, 0.1]),  # the same as clip 3: the lower id first
    ]
    assert triage_order(predictions) == [5, 2, 3, 7, 9]


def test_triage_order_of_nothing_is_empty() -> None:
    assert triage_order([]) == []
