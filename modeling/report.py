"""The experiment-grid report: the paper's tables from plain metric dicts (no ORM, no Django).

Input: one :class:`SettingResult` per (backbone, loss) setting, holding the metric dicts a
training run stores (``metrics_mean``/``metrics_std`` over folds and the ``pooled`` out-of-fold
metrics of :func:`modeling.ml.metrics.evaluate_distributions`). Output: :class:`Table` objects
and their Markdown and HTML renderings.

The tables (numbered as in the paper):

- Table 1, metrics: every setting's mean ± standard deviation over the outer folds of EMD,
  MSE, JSD, CE (lower is better) and HI, macro HI, grade-mode accuracy, macro F1 (higher is
  better); the best value of each column is bold.
- Tables 2 and 3, average ranks per backbone and per loss: for a fixed loss, the backbones are
  ranked on every metric of Table 1 (1 = best, ties share the mean of their ranks) and a
  backbone's cell is its mean rank over those metrics; its last column averages the cells.
  Table 3 swaps the roles (losses ranked within each backbone).
- Table 4, grade-mode accuracy per grade-mode class A..E, of the pooled out-of-fold
  predictions (every clip predicted once, by the model that never saw it).
- Table 5, Top-k HI: the Top25% / Top50% / Top75% HI (``modeling.ml.metrics``: the mean HI of
  the best k% of clips within each grade-mode class, averaged over classes), mean ± std.
- Tables 6 and 7: the rank tables of Tables 2 and 3 on the Top-k HI metrics instead (how a
  setting does on the easy, middle and harder clips).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from annotation.grades import GRADES
from modeling.ml.data import fold_label

# +1: higher is better, -1: lower is better.
METRIC_DIRECTIONS: dict[str, int] = {
    "emd": -1,
    "mse": -1,
    "jsd": -1,
    "ce": -1,
    "hi": 1,
    "macro_hi": 1,
    "mode_accuracy": 1,
    "macro_f1": 1,
    "top25_hi": 1,
    "top50_hi": 1,
    "top75_hi": 1,
}
METRIC_LABELS: dict[str, str] = {
    "emd": "EMD",
    "mse": "MSE",
    "jsd": "JSD",
    "ce": "CE",
    "hi": "HI",
    "macro_hi": "Macro HI",
    "mode_accuracy": "Mode acc.",
    "macro_f1": "Macro F1",
    "top25_hi": "Top25% HI",
    "top50_hi": "Top50% HI",
    "top75_hi": "Top75% HI",
}
MAIN_METRICS: tuple[str, ...] = (
    "emd", "mse", "jsd", "ce", "hi", "macro_hi", "mode_accuracy", "macro_f1",
)  # fmt: skip
TOPK_METRICS: tuple[str, ...] = ("top25_hi", "top50_hi", "top75_hi")
BACKBONE_LABELS: dict[str, str] = {
    "resnet": "ResNet",
    "r2plus1d": "R(2+1)D",
    "slowfast": "SlowFast",
    "timesformer": "TimeSformer",
}
LOSS_LABELS: dict[str, str] = {"ce": "CE", "mse": "MSE", "jsd": "JSD", "emd": "EMD"}


@dataclass(frozen=True)
class SettingResult:
    """The metrics of one grid setting (one training run)."""

    backbone: str
    loss: str
    mean: Mapping[str, float]
    std: Mapping[str, float] = field(default_factory=dict)
    pooled: Mapping[str, Any] = field(default_factory=dict)
    run_id: int | None = None

    @property
    def label(self) -> str:
        backbone = BACKBONE_LABELS.get(self.backbone, self.backbone)
        return f"{backbone} + {LOSS_LABELS.get(self.loss, self.loss)}"


@dataclass(frozen=True)
class Table:
    """A rendered-to-strings table; ``bold`` holds (row, column) indices of cells to stress."""

    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    bold: frozenset[tuple[int, int]] = frozenset()


# --------------------------------------------------------------------------------------------
# Numbers


def rank(values: Sequence[float], *, higher_is_better: bool) -> list[float]:
    """Ranks 1..n of ``values`` (1 = best); tied values share the mean of their ranks."""
    array = np.asarray(values, dtype=float)
    key = -array if higher_is_better else array
    order = np.argsort(key, kind="stable")
    ranks = np.empty(len(array))
    ranks[order] = np.arange(1, len(array) + 1)
    for value in np.unique(key):
        tied = key == value
        ranks[tied] = ranks[tied].mean()
    return ranks.tolist()


@dataclass(frozen=True)
class RankTable:
    """Mean rank of each ``rows`` value within each ``columns`` value; ``overall`` is the mean
    over the columns where the row value was ranked."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: dict[tuple[str, str], float]
    overall: dict[str, float]


def average_ranks(
    results: Iterable[SettingResult],
    *,
    by: Literal["backbone", "loss"],
    metrics: Sequence[str] = MAIN_METRICS,
) -> RankTable:
    """Rank the ``by`` values within each value of the other factor, per metric, and average.

    A setting lacking a metric (a failed run has no metrics at all) is left out of that
    comparison; the others are ranked among themselves.
    """
    other = "loss" if by == "backbone" else "backbone"
    results = [r for r in results if r.mean]
    rows = _ordered({getattr(r, by) for r in results}, by)
    columns = _ordered({getattr(r, other) for r in results}, other)
    cells: dict[tuple[str, str], float] = {}
    for column in columns:
        group = [r for r in results if getattr(r, other) == column]
        per_row: dict[str, list[float]] = {getattr(r, by): [] for r in group}
        for metric in metrics:
            ranked = [r for r in group if metric in r.mean]
            if not ranked:
                continue
            ranks = rank(
                [float(r.mean[metric]) for r in ranked],
                higher_is_better=METRIC_DIRECTIONS[metric] > 0,
            )
            for r, value in zip(ranked, ranks, strict=True):
                per_row[getattr(r, by)].append(value)
        for row, values in per_row.items():
            if values:
                cells[(row, column)] = float(np.mean(values))
    overall = {
        row: float(np.mean([v for (r, _), v in cells.items() if r == row]))
        for row in rows
        if any(r == row for r, _ in cells)
    }
    return RankTable(rows=tuple(rows), columns=tuple(columns), cells=cells, overall=overall)


def _ordered(values: set[str], factor: str) -> list[str]:
    """The paper's order (ResNet, R(2+1)D, SlowFast, TimeSformer; CE, MSE, JSD, EMD), then any
    other value alphabetically."""
    known = list(BACKBONE_LABELS if factor == "backbone" else LOSS_LABELS)
    return [v for v in known if v in values] + sorted(values - set(known))


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of ``features`` (N, D): coordinates (N, 2) and the
    share of the total variance each explains (2,). Fewer than two components (N < 3 or
    constant features) leave zeros in the missing column."""
    x = np.asarray(features, dtype=np.float64)
    coords = np.zeros((len(x), 2))
    explained = np.zeros(2)
    if len(x) < 2:
        return coords, explained
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)  # centred = u @ diag(s) @ vt
    total = float((s**2).sum())
    k = min(2, len(s))
    coords[:, :k] = u[:, :k] * s[:k]
    if total > 0:
        explained[:k] = s[:k] ** 2 / total
    return coords, explained


# --------------------------------------------------------------------------------------------
# Tables


def _mean_std(result: SettingResult, metric: str) -> str:
    if metric not in result.mean:
        return "–"
    mean = float(result.mean[metric])
    std = result.std.get(metric)
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {float(std):.4f}"


def _best_cells(
    results: Sequence[SettingResult], metrics: Sequence[str], first_column: int
) -> frozenset[tuple[int, int]]:
    bold = set()
    for j, metric in enumerate(metrics):
        values = [
            (METRIC_DIRECTIONS[metric] * float(r.mean[metric]), i)
            for i, r in enumerate(results)
            if metric in r.mean
        ]
        if values:
            best = max(v for v, _ in values)
            bold |= {(i, first_column + j) for v, i in values if np.isclose(v, best)}
    return frozenset(bold)


def metrics_table(
    results: Sequence[SettingResult],
    *,
    metrics: Sequence[str] = MAIN_METRICS,
    title: str = "Table 1. Metrics (mean ± std over the outer folds)",
) -> Table:
    rows = tuple((r.label, *(_mean_std(r, m) for m in metrics)) for r in results)
    arrows = {1: " ↑", -1: " ↓"}
    return Table(
        title=title,
        header=("Setting", *(METRIC_LABELS[m] + arrows[METRIC_DIRECTIONS[m]] for m in metrics)),
        rows=rows,
        note="↓ lower is better, ↑ higher is better; the best value of each column is bold.",
        bold=_best_cells(results, metrics, first_column=1),
    )


def rank_table(ranks: RankTable, *, title: str, factor_label: str, other_label: str) -> Table:
    labels = {**BACKBONE_LABELS, **LOSS_LABELS}
    header = (factor_label, *(f"{other_label}: {labels.get(c, c)}" for c in ranks.columns), "Mean")
    rows = []
    for row in ranks.rows:
        cells = [ranks.cells.get((row, c)) for c in ranks.columns]
        overall = ranks.overall.get(row)
        rows.append(
            (
                labels.get(row, row),
                *("–" if v is None else f"{v:.2f}" for v in cells),
                "–" if overall is None else f"{overall:.2f}",
            )
        )
    best = min(ranks.overall.values(), default=None)
    bold = frozenset(
        (i, len(header) - 1)
        for i, row in enumerate(ranks.rows)
        if best is not None
        and ranks.overall.get(row) is not None
        and np.isclose(ranks.overall[row], best)
    )
    return Table(
        title=title,
        header=header,
        rows=tuple(rows),
        note="Mean rank over the metrics (1 = best); ties share the mean of their ranks.",
        bold=bold,
    )


def class_accuracy_table(results: Sequence[SettingResult]) -> Table:
    rows = []
    for r in results:
        per_class = r.pooled.get("per_class", {})
        cells = []
        for grade in GRADES:
            stats = per_class.get(grade)
            cells.append(
                "–" if not stats else f"{100 * stats['mode_accuracy']:.1f} (n={stats['n']})"
            )
        overall = r.pooled.get("mode_accuracy")
        rows.append((r.label, *cells, "–" if overall is None else f"{100 * overall:.1f}"))
    return Table(
        title="Table 4. Grade-mode accuracy per grade-mode class (%, pooled out-of-fold)",
        header=("Setting", *GRADES, "All"),
        rows=tuple(rows),
        note="n = clips whose true grade mode is that class; – = no such clip.",
    )


FOLDS_PER_TABLE = 8  # fold columns in one table: with mean ± std and pooled, ~950 px wide


def fold_metrics_tables(
    fold_metrics: Mapping[str, Mapping[str, Any]],
    *,
    mean: Mapping[str, float],
    std: Mapping[str, float],
    pooled: Mapping[str, Any],
    metrics: Sequence[str] = (*MAIN_METRICS, *TOPK_METRICS),
    folds_per_table: int = FOLDS_PER_TABLE,
) -> list[Table]:
    """One run's test metrics: a row per metric, a column per outer fold (``fold 1``..), and in
    the first table their mean ± std and the pooled out-of-fold metrics (every clip predicted
    once). More than ``folds_per_table`` folds continue in further tables.

    Metrics run down the rows because there are eleven of them: a column per metric did not
    fit a 1366 px screen (Macro F1 and the Top-k HI sat in a horizontal scroll), and a run has
    few folds; a 20-fold run wraps into three tables rather than scroll."""

    def cell(values: Mapping[str, Any], metric: str, spread: Mapping[str, float] | None) -> str:
        value = values.get(metric)
        if value is None:
            return "–"
        if spread is not None and spread.get(metric) is not None:
            return f"{float(value):.4f} ± {float(spread[metric]):.4f}"
        return f"{float(value):.4f}"

    Column = tuple[str, Mapping[str, Any], Mapping[str, float] | None]
    folds: list[Column] = [
        (fold_label(int(k)), fold_metrics[k], None) for k in sorted(fold_metrics, key=int)
    ]
    summary: list[Column] = []
    if mean:
        summary.append(("mean ± std", mean, std))
    if pooled:
        summary.append(("pooled out-of-fold", pooled, None))
    step = max(1, folds_per_table)
    chunks = [folds[i : i + step] for i in range(0, len(folds), step)] or [[]]
    arrows = {1: " ↑", -1: " ↓"}
    tables = []
    for i, chunk in enumerate(chunks):
        columns = chunk + (summary if i == 0 else [])
        title = "Test metrics per outer fold"
        if len(chunks) > 1:
            first = i * step + 1
            title += f" (folds {first}-{first + len(chunk) - 1} of {len(folds)})"
        rows = tuple(
            (
                METRIC_LABELS[m] + arrows[METRIC_DIRECTIONS[m]],
                *(cell(values, m, spread) for _, values, spread in columns),
            )
            for m in metrics
        )
        tables.append(
            Table(
                title=title,
                header=("Metric", *(label for label, _, _ in columns)),
                rows=rows,
                note="↓ lower is better, ↑ higher is better." if i == len(chunks) - 1 else "",
            )
        )
    return tables


def _rank_tables(
    results: Sequence[SettingResult], *, number: int, metrics: Sequence[str], what: str
) -> list[Table]:
    """Table ``number`` (per backbone) and ``number + 1`` (per loss) on ``metrics``."""
    factors: tuple[tuple[Literal["backbone", "loss"], str], ...] = (
        ("backbone", "loss"),
        ("loss", "backbone"),
    )
    return [
        rank_table(
            average_ranks(results, by=by, metrics=metrics),
            title=f"Table {number + i}. Average rank per {by} ({what})",
            factor_label=by.capitalize(),
            other_label=other,
        )
        for i, (by, other) in enumerate(factors)
    ]


def report_tables(results: Sequence[SettingResult]) -> list[Table]:
    """Tables 1-7 of the module docstring, in that order."""
    return [
        metrics_table(results),
        *_rank_tables(results, number=2, metrics=MAIN_METRICS, what="Table 1 metrics"),
        class_accuracy_table(results),
        metrics_table(
            results,
            metrics=TOPK_METRICS,
            title="Table 5. Top-k HI (mean ± std over the outer folds)",
        ),
        *_rank_tables(results, number=6, metrics=TOPK_METRICS, what="Top-k HI"),
    ]


# --------------------------------------------------------------------------------------------
# Rendering


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def table_markdown(table: Table) -> str:
    def row(cells: Sequence[str], i: int | None = None) -> str:
        shown = [
            f"**{_md_cell(c)}**" if i is not None and (i, j) in table.bold else _md_cell(c)
            for j, c in enumerate(cells)
        ]
        return "| " + " | ".join(shown) + " |"

    lines = [f"### {table.title}", "", row(table.header)]
    lines.append("|" + "|".join([" --- "] + [" ---: "] * (len(table.header) - 1)) + "|")
    lines += [row(cells, i) for i, cells in enumerate(table.rows)]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines) + "\n"


def table_html(table: Table, *, table_id: str = "") -> str:
    """An escaped HTML table (class ``grid``, numbers right-aligned by class ``num``)."""
    esc = html.escape
    id_attr = f' id="{esc(table_id)}"' if table_id else ""
    parts = [f"<h3>{esc(table.title)}</h3>", f'<table class="grid"{id_attr}><thead><tr>']
    num = ' class="num"'
    parts += [f"<th{'' if j == 0 else num}>{esc(h)}</th>" for j, h in enumerate(table.header)]
    parts.append("</tr></thead><tbody>")
    for i, cells in enumerate(table.rows):
        parts.append("<tr>")
        for j, cell in enumerate(cells):
            text = f"<strong>{esc(cell)}</strong>" if (i, j) in table.bold else esc(cell)
            parts.append(f"<td{'' if j == 0 else num}>{text}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    if table.note:
        parts.append(f'<p class="muted">{esc(table.note)}</p>')
    return "".join(parts)


@dataclass(frozen=True)
class Figure:
    """An SVG figure of the report: written to ``filename`` beside report.md/report.html."""

    filename: str
    caption: str
    svg: str


def report_markdown(
    *, title: str, intro: Sequence[str], tables: Sequence[Table], figures: Sequence[Figure]
) -> str:
    lines = [f"# {title}", "", *intro, ""]
    for table in tables:
        lines.append(table_markdown(table))
    if figures:
        lines.append("## Figures\n")
    for figure in figures:
        lines += [f"![{figure.caption}]({figure.filename})", "", f"_{figure.caption}_", ""]
    return "\n".join(lines)


_REPORT_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2rem auto; }
table.grid { border-collapse: collapse; margin: .5rem 0; }
table.grid th, table.grid td { border-bottom: 1px solid #dde2ea; padding: .3rem .6rem; }
table.grid .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #6b7280; } figure { margin: 1rem 0; }
"""


def report_body_html(
    *, intro: Sequence[str], tables: Sequence[Table], figures: Sequence[Figure], inline_svg: bool
) -> str:
    """The report's content as an HTML fragment: figures inline (a page) or as <img> links to
    the SVG files (the standalone report.html)."""
    parts = [f"<p>{html.escape(line)}</p>" for line in intro if line]
    parts += [table_html(t) for t in tables]
    for figure in figures:
        body = (
            figure.svg
            if inline_svg
            else f'<img src="{html.escape(figure.filename)}" alt="{html.escape(figure.caption)}">'
        )
        parts.append(
            f"<figure>{body}<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def report_html(
    *, title: str, intro: Sequence[str], tables: Sequence[Table], figures: Sequence[Figure]
) -> str:
    body = report_body_html(intro=intro, tables=tables, figures=figures, inline_svg=False)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_REPORT_CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )
