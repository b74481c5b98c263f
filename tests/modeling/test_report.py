"""The grid report's tables from hand-made metric dicts (pure code, no database)."""

from __future__ import annotations

import numpy as np
import pytest

from modeling.figures import Curve, PcaPanel, hi_by_class_svg, learning_curves_svg, pca_svg
from modeling.report import (
    SettingResult,
    average_ranks,
    fold_metrics_tables,
    metrics_table,
    pca_2d,
    rank,
    report_html,
    report_markdown,
    report_tables,
    table_markdown,
)


def _setting(backbone: str, loss: str, emd: float, hi: float, **extra: float) -> SettingResult:
    return SettingResult(
        backbone=backbone, loss=loss, mean={"emd": emd, "hi": hi, **extra}, std={"emd": 0.001}
    )


# Two backbones x two losses. Within CE: TimeSformer wins both metrics. Within EMD: ResNet has
# the better EMD, TimeSformer the better HI (a split).
HAND = [
    _setting("resnet", "ce", emd=0.30, hi=0.70),
    _setting("resnet", "emd", emd=0.10, hi=0.80),
    _setting("timesformer", "ce", emd=0.20, hi=0.75),
    _setting("timesformer", "emd", emd=0.15, hi=0.85),
]


def test_ranks_put_the_best_first_in_either_direction_and_share_ties() -> None:
    assert rank([0.3, 0.1, 0.2], higher_is_better=False) == [3.0, 1.0, 2.0]
    assert rank([0.3, 0.1, 0.2], higher_is_better=True) == [1.0, 3.0, 2.0]
    assert rank([0.5, 0.5, 0.9], higher_is_better=True) == [2.5, 2.5, 1.0]


def test_average_rank_per_backbone_on_a_hand_example() -> None:
    ranks = average_ranks(HAND, by="backbone", metrics=("emd", "hi"))
    assert ranks.rows == ("resnet", "timesformer")  # the paper's order
    assert ranks.columns == ("ce", "emd")
    # CE: TimeSformer is first on EMD (lower) and HI (higher).
    assert ranks.cells[("timesformer", "ce")] == 1.0
    assert ranks.cells[("resnet", "ce")] == 2.0
    # EMD: ResNet first on EMD, second on HI -> 1.5; TimeSformer the reverse -> 1.5.
    assert ranks.cells[("resnet", "emd")] == 1.5
    assert ranks.cells[("timesformer", "emd")] == 1.5
    assert ranks.overall == {"resnet": 1.75, "timesformer": 1.25}


def test_average_rank_per_loss_on_a_hand_example() -> None:
    ranks = average_ranks(HAND, by="loss", metrics=("emd", "hi"))
    assert ranks.rows == ("ce", "emd")
    # EMD beats CE on both metrics within each backbone.
    assert ranks.cells[("emd", "resnet")] == ranks.cells[("emd", "timesformer")] == 1.0
    assert ranks.overall == {"ce": 2.0, "emd": 1.0}


def test_a_setting_without_metrics_is_left_out_of_the_ranking() -> None:
    failed = SettingResult(backbone="slowfast", loss="ce", mean={})
    ranks = average_ranks([*HAND, failed], by="backbone", metrics=("emd", "hi"))
    assert "slowfast" not in ranks.rows
    assert ranks.overall == {"resnet": 1.75, "timesformer": 1.25}


def test_the_metrics_table_bolds_the_best_value_of_each_column() -> None:
    table = metrics_table(HAND, metrics=("emd", "hi"))
    assert table.header == ("Setting", "EMD ↓", "HI ↑")
    assert table.rows[1] == ("ResNet + EMD", "0.1000 ± 0.0010", "0.8000")
    assert table.bold == {(1, 1), (3, 2)}  # ResNet+EMD's EMD, TimeSformer+EMD's HI
    markdown = table_markdown(table)
    assert "| ResNet + EMD | **0.1000 ± 0.0010** | 0.8000 |" in markdown


def test_the_report_has_the_papers_seven_tables_and_per_class_accuracy() -> None:
    pooled = {
        "mode_accuracy": 0.6,
        "per_class": {"B": {"n": 4, "mode_accuracy": 0.75}, "C": {"n": 1, "mode_accuracy": 0.0}},
    }
    results = [SettingResult("timesformer", "emd", mean={"hi": 0.8}, pooled=pooled)]
    tables = report_tables(results)
    assert [t.title.split(".")[0] for t in tables] == [f"Table {i}" for i in range(1, 8)]
    accuracy = tables[3]
    assert accuracy.header == ("Setting", "A", "B", "C", "D", "E", "All")
    expected = ("TimeSformer + EMD", "–", "75.0 (n=4)", "0.0 (n=1)", "–", "–", "60.0")
    assert accuracy.rows[0] == expected


def test_markdown_and_html_reports_escape_and_link_the_figures() -> None:
    from modeling.report import Figure, Table

    table = Table(title="T <1>", header=("a|b", "c"), rows=(("<script>", "1"),))
    figure = Figure("f.svg", "a figure", "<svg></svg>")
    md = report_markdown(title="R", intro=["hello"], tables=[table], figures=[figure])
    assert "| a\\|b | c |" in md and "![a figure](f.svg)" in md
    page = report_html(title="R", intro=["hello"], tables=[table], figures=[figure])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '<img src="f.svg"' in page


def test_the_fold_table_has_a_row_per_metric_and_folds_counted_from_one_then_mean_and_pooled() -> (
    None
):
    [table] = fold_metrics_tables(
        {"1": {"hi": 0.7, "emd": 0.2}, "0": {"hi": 0.8}},
        mean={"hi": 0.75},
        std={"hi": 0.07},
        pooled={"hi": 0.74},
        metrics=("hi", "emd"),
    )
    assert table.header == ("Metric", "fold 1", "fold 2", "mean ± std", "pooled out-of-fold")
    assert [row[0] for row in table.rows] == ["HI ↑", "EMD ↓"]
    assert table.rows[0][1:] == ("0.8000", "0.7000", "0.7500 ± 0.0700", "0.7400")
    assert table.rows[1][1:] == ("–", "0.2000", "–", "–")  # a metric a fold lacks


def test_a_run_of_many_folds_continues_its_fold_table_rather_than_widen_it() -> None:
    folds = {str(k): {"hi": k / 100} for k in range(20)}
    tables = fold_metrics_tables(folds, mean={"hi": 0.1}, std={"hi": 0.05}, pooled={"hi": 0.1},
                                 metrics=("hi",), folds_per_table=8)  # fmt: skip
    assert [len(t.header) for t in tables] == [1 + 8 + 2, 1 + 8, 1 + 4]
    assert tables[0].header[-2:] == ("mean ± std", "pooled out-of-fold")
    assert tables[2].title.endswith("(folds 17-20 of 20)") and tables[2].header[-1] == "fold 20"
    assert [t.note != "" for t in tables] == [False, False, True]


def test_pca_recovers_the_direction_of_largest_variance() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    features = np.stack([3 * t, 3 * t, 0.1 * rng.normal(size=200)], axis=1)
    coords, explained = pca_2d(features)
    assert explained[0] > 0.99
    assert abs(np.corrcoef(coords[:, 0], t)[0, 1]) > 0.999
    assert pca_2d(np.ones((1, 4)))[1].tolist() == [0.0, 0.0]  # one clip: no components


@pytest.mark.parametrize("label", ["<b>fold</b>", "x & y"])
def test_figures_are_plain_svg_with_escaped_text_and_no_style_attributes(label: str) -> None:
    curves = learning_curves_svg(
        [Curve(fold=0, epochs=[1, 2, 3], train_loss=[0.3, 0.2, 0.1], val_loss=[0.3, 0.25, 0.27],
               best_epoch=2)],
        loss_name=label,
    )  # fmt: skip
    boxes = hi_by_class_svg({"A": [0.9, 0.8], "C": [0.5]})
    pca = pca_svg([PcaPanel(title=label, points=[(0.0, 1.0, "B"), (1.0, 0.0, "E")],
                            explained=(0.6, 0.3))])  # fmt: skip
    for svg in (curves, boxes, pca):
        assert svg.startswith("<svg") and "style=" not in svg and "<script" not in svg
        assert "<b>" not in svg
    assert "polyline" in curves and "A (n=2)" in boxes and "PC1 (60% of variance)" in pca


def _scale_labels(svg: str) -> tuple[list[str], int]:
    scale = svg[svg.index('<g class="legend">') :].split("</g>")[0]
    return [t.split(">", 1)[1].split("<", 1)[0] for t in scale.split("<text")[1:]], scale.count(
        "<rect"
    )


def test_the_grid_heatmap_has_a_colour_scale_from_the_worst_value_to_the_best() -> None:
    from modeling.figures import heatmap_svg

    values = {("r", "a"): 0.08, ("r", "b"): 0.05, ("s", "a"): 0.06, ("s", "b"): float("nan")}
    grid = {"rows": [("r", "resnet"), ("s", "slowfast")], "columns": [("a", "emd"), ("b", "ce")]}
    # Lower EMD is better: the scale runs from the highest value (worse) to the lowest.
    emd = heatmap_svg(values, **grid, metric_label="EMD", higher_is_better=False)
    assert _scale_labels(emd) == (["worse", "0.0800", "0.0500", "better"], 5)
    hi = heatmap_svg(values, **grid, metric_label="HI", higher_is_better=True)
    assert _scale_labels(hi) == (["worse", "0.0500", "0.0800", "better"], 5)
