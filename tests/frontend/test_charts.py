"""The geometry of the server-rendered charts (frontend/charts.py): round axis ticks, counts
on bar charts, the heatmap's colour scale, intervals and a readable one-session line."""

from __future__ import annotations

import itertools

import pytest

from frontend.charts import (
    axis_ticks,
    bar_chart,
    heatmap_chart,
    histogram_chart,
    interval_chart,
    line_chart,
)


def test_a_zero_to_one_axis_gets_quarter_ticks() -> None:
    assert axis_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_count_axis_of_37_ends_on_a_round_tick_above_it() -> None:
    ticks = axis_ticks(0.0, 37.0, integer=True)

    assert ticks == [0, 10, 20, 30, 40]
    assert all(float(t).is_integer() for t in ticks)


def test_small_counts_get_whole_steps_never_halves() -> None:
    assert axis_ticks(0.0, 3.0, integer=True) == [0, 1, 2, 3]
    assert axis_ticks(0.0, 7.0, integer=True) == [0, 2, 4, 6, 8]


def test_a_count_axis_of_zeros_runs_from_zero_to_one() -> None:
    assert axis_ticks(0.0, 0.0, integer=True) == [0, 1]


def test_a_single_value_gets_an_axis_around_it() -> None:
    ticks = axis_ticks(0.42, 0.42)

    assert len(ticks) >= 3
    assert ticks[0] < 0.42 < ticks[-1]
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1  # evenly spaced
    assert axis_ticks(0.0, 0.0) == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_a_negative_low_end_is_covered_by_a_round_tick() -> None:
    ticks = axis_ticks(-0.13, 1.0)

    assert ticks[0] <= -0.13 and ticks[-1] >= 1.0
    assert 0.0 in ticks


@pytest.mark.parametrize(("low", "high"), [(1.0, 0.0), (0.0, float("nan")), (float("inf"), 1.0)])
def test_an_axis_with_impossible_bounds_is_refused_with_the_bounds(low, high) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="axis"):
        axis_ticks(low, high)


def test_a_bar_chart_has_count_ticks_up_to_the_tallest_bar_and_its_values() -> None:
    chart = bar_chart({"A": 37, "B": 12, "C": 0, "D": 5, "E": 1})

    labels = [t["label"] for t in chart["y_ticks"]]
    assert labels == ["0", "10", "20", "30", "40"]
    tallest = chart["bars"][0]
    # 37 of 40 on the axis: the bar reaches 37/40 of the plot height.
    plot_h = chart["base_y"] - chart["top_y"]
    assert tallest["height"] == pytest.approx(plot_h * 37 / 40, abs=0.01)
    assert chart["show_values"] and chart["total"] == 55
    assert [b["tick"] for b in chart["bars"]] == ["A", "B", "C", "D", "E"]


def test_a_bar_chart_of_zeros_draws_no_bar_on_a_zero_to_one_axis() -> None:
    chart = bar_chart({"A": 0, "B": 0})

    assert [t["label"] for t in chart["y_ticks"]] == ["0", "1"]
    assert all(b["height"] == 0 for b in chart["bars"])


def test_a_histogram_of_many_experts_labels_some_and_leaves_the_rest_to_its_table() -> None:
    labels = [f"rater-{k:02d}" for k in range(40)]
    chart = histogram_chart(labels, list(range(40)), max_ticks=8, unit="votes")

    ticked = [b["tick"] for b in chart["bars"] if b["tick"]]
    assert 1 < len(ticked) <= 8
    assert not chart["show_values"]  # too narrow to write 40 numbers
    assert chart["focusable"]  # 40 marks still fit the keyboard
    assert not histogram_chart(labels * 2, list(range(80)))["focusable"]  # 80: the table serves


def test_histogram_labels_and_values_must_pair_up() -> None:
    with pytest.raises(ValueError, match="2 labels for 3 values"):
        histogram_chart(["a", "b"], [1, 2, 3])


def test_the_heatmap_scale_runs_from_one_clip_to_the_fullest_cell() -> None:
    matrix = [[0, 3], [37, 1]]
    chart = heatmap_chart(matrix, x_edges=[1, 3, 5], y_edges=[0, 1, 2])

    scale = chart["scale"]
    labels = [t["label"] for t in scale["ticks"]]
    assert labels[0] == "1" and labels[-1] == "37"
    # Shades grow up the strip, from the lightest cell's to the darkest cell's.
    opacities = [s["opacity"] for s in scale["steps"]]
    assert opacities == sorted(opacities)
    cell_opacities = {c["count"]: c["opacity"] for c in chart["cells"]}
    assert opacities[0] >= cell_opacities[1] and opacities[-1] <= cell_opacities[37]
    assert len(chart["cells"]) == 3  # the empty bin is not drawn


def test_a_heatmap_of_one_clip_still_has_a_scale() -> None:
    chart = heatmap_chart([[1]], x_edges=[1, 5], y_edges=[0, 2])

    assert [t["label"] for t in chart["scale"]["ticks"]] == ["1"]
    assert len(chart["scale"]["steps"]) == 1


def test_an_interval_chart_draws_whiskers_only_where_there_is_an_interval() -> None:
    chart = interval_chart([("α", 0.5, 0.4, 0.6), ("κ", 0.3, None, None)])

    alpha, kappa = chart["rows"]
    assert alpha["x_low"] < alpha["x"] < alpha["x_high"]
    assert kappa["x_low"] is None and kappa["x"] is not None
    assert chart["ticks"][0]["label"] == "-0.2"


def test_a_single_session_is_drawn_as_labelled_levels_not_lone_dots() -> None:
    chart = line_chart(
        [("share", [0.62]), ("kappa", [0.41])],
        x_labels=["1"],
        low=0.0,
        high=1.0,
        reference=("kappa needed", 0.6),
    )

    for line in chart["lines"]:
        assert line["level"] is not None and line["level"]["x2"] - line["level"]["x1"] > 40
    assert chart["label_points"]
    assert chart["reference"]["y"] < chart["lines"][1]["points"][0]["y"]  # 0.6 above 0.41
    only = chart["x_ticks"][0]["x"]
    assert chart["left"] < only < chart["right"]
    assert only == pytest.approx((chart["left"] + chart["right"]) / 2)


def test_a_negative_kappa_widens_the_line_chart_axis_below_zero() -> None:
    chart = line_chart([("kappa", [-0.3, 0.5])], x_labels=["1", "2"], low=0.0, high=1.0)

    values = [float(t["label"]) for t in chart["y_ticks"]]
    assert values[0] <= -0.3 and values[-1] >= 1.0
    point = chart["lines"][0]["points"][0]
    assert point["y"] < chart["base_y"]  # drawn where it belongs, not clipped to the axis
