"""SVG figures of training runs and grid reports, as strings (no Django, no JavaScript).

The same strings go into the run page and into the standalone report files, so there is one
drawing for both. Colours are SVG presentation attributes (``fill``, ``stroke``), never
``style`` attributes, so the pages' Content-Security-Policy (no inline styles) allows them;
every text is escaped.

- :func:`learning_curves_svg`: train and val loss by epoch, one panel per fold (Figure 5).
- :func:`hi_by_class_svg`: HI per clip by true grade-mode class, box plot + points (Figure 6).
- :func:`pca_svg`: PC1/PC2 of the backbone features coloured by grade mode, one panel per
  fold (Figure 7).
- :func:`heatmap_svg`: one metric over the backbone x loss grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

from annotation.grades import GRADES
from modeling.ml.data import fold_label

GRADE_COLOURS: dict[str, str] = {
    "A": "#1a9850",
    "B": "#66bd63",
    "C": "#d9a400",
    "D": "#f46d43",
    "E": "#a50026",
}
TRAIN_COLOUR, VAL_COLOUR, AXIS_COLOUR, TEXT_COLOUR, MUTED = (
    "#2f6fde", "#d9480f", "#9aa3b2", "#1d2330", "#6b7280",
)  # fmt: skip
PANEL_W, PANEL_H = 300, 210
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 46, 10, 26, 34
PANELS_PER_ROW = 3


def _f(x: float) -> str:
    return f"{x:.1f}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


@dataclass(frozen=True)
class _Axes:
    """Maps data coordinates to pixels inside one panel whose top-left corner is (ox, oy)."""

    ox: float
    oy: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width: float = PANEL_W
    height: float = PANEL_H

    @property
    def left(self) -> float:
        return self.ox + MARGIN_L

    @property
    def right(self) -> float:
        return self.ox + self.width - MARGIN_R

    @property
    def top(self) -> float:
        return self.oy + MARGIN_T

    @property
    def bottom(self) -> float:
        return self.oy + self.height - MARGIN_B

    def x(self, value: float) -> float:
        lo, hi = self.x_range
        return self.left + (self.right - self.left) * ((value - lo) / (hi - lo) if hi > lo else 0.5)

    def y(self, value: float) -> float:
        lo, hi = self.y_range
        fraction = (value - lo) / (hi - lo) if hi > lo else 0.5
        return self.bottom - (self.bottom - self.top) * fraction

    def points(self, xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
        """Pixel positions of the finite (x, y) pairs, in one numpy pass: a live run page
        redraws thousands of epochs every poll."""
        x = np.asarray(xs, dtype=float)
        y = np.asarray(ys, dtype=float)
        keep = np.isfinite(x) & np.isfinite(y)
        (x_lo, x_hi), (y_lo, y_hi) = self.x_range, self.y_range
        px = (x[keep] - x_lo) / (x_hi - x_lo) if x_hi > x_lo else np.full(keep.sum(), 0.5)
        py = (y[keep] - y_lo) / (y_hi - y_lo) if y_hi > y_lo else np.full(keep.sum(), 0.5)
        left, bottom = self.left, self.bottom
        px = left + (self.right - left) * px
        py = bottom - (bottom - self.top) * py
        return list(zip(px.tolist(), py.tolist(), strict=True))

    def frame(
        self,
        *,
        title: str,
        x_label: str,
        y_label: str,
        x_ticks: Sequence[float] | None = None,
        x_tick_labels: Sequence[str] | None = None,
    ) -> list[str]:
        """Title, axes, ticks and labels; each axis is a <g class="axis-x"> / "axis-y" (the
        class names the pages' browser tests look for)."""
        parts = [
            _text(self.ox + self.width / 2, self.oy + 14, title, anchor="middle", weight="600"),
            '<g class="axis-y">',
            _line(self.left, self.top, self.left, self.bottom, AXIS_COLOUR),
        ]
        for tick in nice_ticks(*self.y_range, count=5):
            y = self.y(tick)
            parts.append(_line(self.left - 3, y, self.left, y, AXIS_COLOUR))
            parts.append(_text(self.left - 5, y + 3, f"{tick:g}", anchor="end", size=9))
        parts.append(_text(self.ox + 10, (self.top + self.bottom) / 2, y_label, anchor="middle",
                           size=10, fill=MUTED, rotate=True))  # fmt: skip
        parts += ["</g>", '<g class="axis-x">']
        parts.append(_line(self.left, self.bottom, self.right, self.bottom, AXIS_COLOUR))
        if x_ticks is None:
            x_ticks = nice_ticks(*self.x_range, count=5)
        labels = x_tick_labels or [f"{t:g}" for t in x_ticks]
        for tick, label in zip(x_ticks, labels, strict=True):
            x = self.x(tick)
            parts.append(_line(x, self.bottom, x, self.bottom + 3, AXIS_COLOUR))
            parts.append(_text(x, self.bottom + 13, label, anchor="middle", size=9))
        parts.append(_text((self.left + self.right) / 2, self.oy + self.height - 6, x_label,
                           anchor="middle", size=10, fill=MUTED))  # fmt: skip
        parts.append("</g>")
        return parts


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, dash: str = "") -> str:
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" stroke="{stroke}"'
        f' stroke-width="1"{dash_attr}/>'
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    size: int = 11,
    fill: str = TEXT_COLOUR,
    weight: str = "normal",
    rotate: bool = False,
) -> str:
    transform = f' transform="rotate(-90 {_f(x)} {_f(y)})"' if rotate else ""
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" font-size="{size}"'
        f' font-family="system-ui, sans-serif" font-weight="{weight}" fill="{fill}"{transform}>'
        f"{escape(text)}</text>"
    )


def _polyline(points: Sequence[tuple[float, float]], stroke: str, dash: str = "") -> str:
    coords = " ".join(f"{_f(x)},{_f(y)}" for x, y in points)
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<polyline points="{coords}" fill="none" stroke="{stroke}" stroke-width="1.6"{dash_attr}/>'
    )


def _svg(width: float, height: float, title: str, parts: Sequence[str], css_id: str = "") -> str:
    id_attr = f' id="{escape(css_id)}"' if css_id else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="model-figure"{id_attr} '
        f'viewBox="0 0 {_f(width)} {_f(height)}" width="{_f(width)}" height="{_f(height)}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def _panel_origin(index: int, legend_h: float) -> tuple[float, float]:
    return (index % PANELS_PER_ROW) * PANEL_W, legend_h + (index // PANELS_PER_ROW) * PANEL_H


def _canvas(n_panels: int, legend_h: float) -> tuple[float, float]:
    columns = min(max(n_panels, 1), PANELS_PER_ROW)
    rows = max(1, math.ceil(n_panels / PANELS_PER_ROW))
    return columns * PANEL_W, legend_h + rows * PANEL_H


def _legend(items: Sequence[tuple[str, str, str]], y: float = 12, x: float = 8.0) -> list[str]:
    """(label, colour, kind) entries in one row, in a <g class="legend">; kind: "line",
    "dash", "dot" or "box"."""
    parts = ['<g class="legend">']
    for label, colour, kind in items:
        if kind == "dot":
            parts.append(f'<circle cx="{_f(x + 6)}" cy="{_f(y - 4)}" r="4" fill="{colour}"/>')
        elif kind == "box":
            parts.append(
                f'<rect x="{_f(x + 2)}" y="{_f(y - 9)}" width="14" height="10" fill="{colour}" '
                f'fill-opacity="0.18" stroke="{colour}"/>'
            )
        else:
            parts.append(_line(x, y - 4, x + 18, y - 4, colour, "4 3" if kind == "dash" else ""))
        parts.append(_text(x + 22, y, label, size=10))
        x += 30 + 6.5 * len(label)
    return [*parts, "</g>"]


# --------------------------------------------------------------------------------------------
# Figure 5: learning curves


@dataclass(frozen=True)
class Curve:
    """One fold's learning curve."""

    fold: int
    epochs: Sequence[int]
    train_loss: Sequence[float]
    val_loss: Sequence[float]
    best_epoch: int | None = None


def learning_curves_svg(curves: Sequence[Curve], *, loss_name: str = "loss") -> str:
    """Train (solid) and val (dashed) loss by epoch, one panel per fold; a dotted line marks
    the epoch kept (lowest val loss)."""
    title = f"Learning curves ({loss_name})"
    legend_h = 20.0
    width, height = _canvas(len(curves), legend_h)
    parts = _legend(
        [("train", TRAIN_COLOUR, "line"), ("val", VAL_COLOUR, "dash"), ("kept", MUTED, "dash")]
    )
    for i, curve in enumerate(curves):
        ox, oy = _panel_origin(i, legend_h)
        values = [v for v in (*curve.train_loss, *curve.val_loss) if math.isfinite(v)]
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        pad = 0.05 * (high - low or abs(high) or 1.0)
        last = max(curve.epochs, default=1)
        axes = _Axes(ox, oy, (1.0, float(max(last, 2))), (max(0.0, low - pad), high + pad))
        parts += axes.frame(title=fold_label(curve.fold), x_label="epoch", y_label=loss_name)
        for series, colour, dash in (
            (curve.train_loss, TRAIN_COLOUR, ""),
            (curve.val_loss, VAL_COLOUR, "4 3"),
        ):
            points = axes.points(curve.epochs, series)
            if len(points) == 1:
                x, y = points[0]
                parts.append(f'<circle cx="{_f(x)}" cy="{_f(y)}" r="2.5" fill="{colour}"/>')
            elif points:
                parts.append(_polyline(points, colour, dash))
        if curve.best_epoch:
            x = axes.x(curve.best_epoch)
            parts.append(_line(x, axes.top, x, axes.bottom, MUTED, "1 3"))
    if not curves:  # empty axes, so the figure reads the same before the first epoch
        axes = _Axes(0.0, legend_h, (1.0, 10.0), (0.0, 1.0))
        parts += axes.frame(title="no epochs yet", x_label="epoch", y_label=loss_name)
    return _svg(width, height, title, parts, css_id="learning-curves")


# --------------------------------------------------------------------------------------------
# Figure 6: HI per grade-mode class


def _jitter(i: int) -> float:
    """A deterministic spread in [-0.5, 0.5) (golden-ratio sequence): the same page twice
    draws the same points."""
    return (i * 0.6180339887498949) % 1.0 - 0.5


def hi_by_class_svg(groups: Mapping[str, Sequence[float]]) -> str:
    """HI per clip grouped by the clip's true grade mode: a box (quartiles, median) with
    whiskers to the extremes, and every clip as a point."""
    title = "HI per clip by true grade mode"
    legend_h = 20.0
    width, height = 480.0, 240.0 + legend_h
    axes = _Axes(0, legend_h, (-0.5, len(GRADES) - 0.5), (0.0, 1.0), width=width, height=240.0)
    parts = _legend(
        [("quartiles (box), median (line)", MUTED, "box"), ("extremes", MUTED, "line"),
         ("one clip", MUTED, "dot")]
    )  # fmt: skip
    labels = [f"{g} (n={len(groups.get(g, []))})" for g in GRADES]
    parts += axes.frame(
        title=title,
        x_label="true grade mode",
        y_label="HI",
        x_ticks=list(range(len(GRADES))),
        x_tick_labels=labels,
    )
    for k, grade in enumerate(GRADES):
        values = np.asarray(groups.get(grade, []), dtype=float)
        if values.size == 0:
            continue
        colour = GRADE_COLOURS[grade]
        x0, x1 = axes.x(k - 0.3), axes.x(k + 0.3)
        q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
        centre = axes.x(k)
        parts.append(_line(centre, axes.y(values.min()), centre, axes.y(q1), colour))
        parts.append(_line(centre, axes.y(q3), centre, axes.y(values.max()), colour))
        parts.append(
            f'<rect x="{_f(x0)}" y="{_f(axes.y(q3))}" width="{_f(x1 - x0)}" '
            f'height="{_f(max(axes.y(q1) - axes.y(q3), 0.5))}" fill="{colour}" '
            f'fill-opacity="0.18" stroke="{colour}"><title>{escape(grade)}: median '
            f"{median:.3f}, quartiles {q1:.3f}-{q3:.3f}, n={values.size}</title></rect>"
        )
        parts.append(_line(x0, axes.y(median), x1, axes.y(median), colour))
        for i, value in enumerate(values):
            x = axes.x(k + 0.45 * _jitter(i))
            parts.append(
                f'<circle cx="{_f(x)}" cy="{_f(axes.y(value))}" r="1.6" fill="{colour}" '
                f'fill-opacity="0.7"/>'
            )
    return _svg(width, height, title, parts, css_id="hi-by-class")


# --------------------------------------------------------------------------------------------
# Figure 7: PCA of the backbone features


@dataclass(frozen=True)
class PcaPanel:
    """One fold's test clips in PC1/PC2 of that fold's model features."""

    title: str
    points: Sequence[tuple[float, float, str]]  # (pc1, pc2, true grade mode)
    explained: tuple[float, float]


def pca_svg(panels: Sequence[PcaPanel]) -> str:
    title = "PCA of the backbone features, coloured by true grade mode"
    legend_h = 20.0
    width, height = _canvas(len(panels), legend_h)
    parts = _legend([(g, GRADE_COLOURS[g], "dot") for g in GRADES])
    for i, panel in enumerate(panels):
        ox, oy = _panel_origin(i, legend_h)
        xs = [p[0] for p in panel.points] or [0.0]
        ys = [p[1] for p in panel.points] or [0.0]
        pad_x = 0.05 * ((max(xs) - min(xs)) or 1.0)
        pad_y = 0.05 * ((max(ys) - min(ys)) or 1.0)
        axes = _Axes(ox, oy, (min(xs) - pad_x, max(xs) + pad_x), (min(ys) - pad_y, max(ys) + pad_y))
        parts += axes.frame(
            title=panel.title,
            x_label=f"PC1 ({100 * panel.explained[0]:.0f}% of variance)",
            y_label=f"PC2 ({100 * panel.explained[1]:.0f}%)",
        )
        for x, y, grade in panel.points:
            parts.append(
                f'<circle cx="{_f(axes.x(x))}" cy="{_f(axes.y(y))}" r="2.6" '
                f'fill="{GRADE_COLOURS.get(grade, MUTED)}" fill-opacity="0.8"/>'
            )
    return _svg(width, height, title, parts, css_id="pca")


# --------------------------------------------------------------------------------------------
# Grid overview


def heatmap_svg(
    values: Mapping[tuple[str, str], float],
    *,
    rows: Sequence[tuple[str, str]],
    columns: Sequence[tuple[str, str]],
    metric_label: str,
    higher_is_better: bool,
) -> str:
    """A rows x columns grid of one metric; rows and columns are (key, label) pairs; the better
    the value, the darker its cell."""
    title = f"{metric_label} per setting"
    cell_w, cell_h, left, top = 96, 34, 110, 40
    scale_h = 34  # the colour scale below the grid
    width = max(left + cell_w * len(columns) + 10, left + 5 * 40 + 120)
    height = top + cell_h * len(rows) + 10 + scale_h
    known = [v for v in values.values() if math.isfinite(v)]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    parts = [_text(width / 2, 16, title, anchor="middle", weight="600")]
    for j, (_, label) in enumerate(columns):
        parts.append(_text(left + (j + 0.5) * cell_w, top - 8, label, anchor="middle", size=10))
    for i, (row_key, label) in enumerate(rows):
        y = top + i * cell_h
        parts.append(_text(left - 8, y + cell_h / 2 + 4, label, anchor="end", size=10))
        for j, (column_key, _) in enumerate(columns):
            x = left + j * cell_w
            value = values.get((row_key, column_key))
            if value is None or not math.isfinite(value):
                parts.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, "–", anchor="middle"))
                continue
            share = (value - low) / (high - low) if high > low else 1.0
            goodness = share if higher_is_better else 1 - share
            parts.append(
                f'<rect x="{_f(x + 1)}" y="{_f(y + 1)}" width="{cell_w - 2}" '
                f'height="{cell_h - 2}" fill="{TRAIN_COLOUR}" '
                f'fill-opacity="{0.12 + 0.6 * goodness:.3f}"/>'
            )
            parts.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, f"{value:.4f}", anchor="middle"))
    parts += _heatmap_scale(
        low, high, higher_is_better, x=left, y=top + cell_h * len(rows) + 14, known=bool(known)
    )
    return _svg(width, height, title, parts, css_id="grid-heatmap")


def _heatmap_scale(
    low: float, high: float, higher_is_better: bool, *, x: float, y: float, known: bool
) -> list[str]:
    """The heatmap's colour scale: five steps from the worst value to the best, labelled at
    both ends, in a <g class="legend">."""
    if not known:
        return []
    steps, step_w = 5, 40
    parts = ['<g class="legend">', _text(x - 8, y + 11, "worse", anchor="end", size=10)]
    for k in range(steps):
        goodness = k / (steps - 1)
        parts.append(
            f'<rect x="{_f(x + k * step_w)}" y="{_f(y)}" width="{step_w}" height="14" '
            f'fill="{TRAIN_COLOUR}" fill-opacity="{0.12 + 0.6 * goodness:.3f}"/>'
        )
    worst, best = (low, high) if higher_is_better else (high, low)
    parts.append(_text(x, y + 26, f"{worst:.4f}", anchor="start", size=10))
    parts.append(_text(x + steps * step_w, y + 26, f"{best:.4f}", anchor="end", size=10))
    parts.append(_text(x + steps * step_w + 8, y + 11, "better", anchor="start", size=10))
    parts.append("</g>")
    return parts
