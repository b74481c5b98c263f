"""Geometry for small server-rendered SVG charts (no JavaScript, no inline styles: CSP-safe).

Each function returns plain numbers for one template include in frontend/templates/frontend/;
colours come from CSS classes in app.css, never from style attributes (CSP). Every chart has
the same parts, with stable class names the browser tests look for: an x and/or y axis
(`.axis-x`, `.axis-y`) with ticks, a legend (`.legend`) that says what the marks count, and
marks that carry their value in a <title> and an aria-label (focusable where there are few).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# Marks get tabindex="0" (keyboard focus) up to this many per chart; beyond that the page
# offers a table of the same numbers instead of a long tab trail.
MAX_FOCUSABLE_MARKS = 60


def axis_ticks(low: float, high: float, *, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values for an axis covering [low, high]: the first tick is at or below `low`,
    the last at or above `high`, about `count` of them, steps of 1, 2, 2.5 or 5 times a power
    of ten (integer=True: whole steps of 1, 2 or 5 x 10^k, for counts).

    A single value (low == high) gets an axis around it; a count axis of zeros is 0..1.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"axis bounds must be finite numbers, got {low} and {high}")
    if high < low:
        raise ValueError(f"axis high must not lie below low, got {low} > {high}")
    if count < 2:
        raise ValueError(f"an axis needs at least 2 ticks, got count={count}")
    if high == low:
        if integer:
            low, high = min(low, 0.0), max(high, low + 1.0)
        else:
            half = abs(low) * 0.1 or 1.0
            low, high = low - half, high + half
    raw = (high - low) / (count - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    factors = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(f * magnitude for f in factors if f * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, round(step))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    ticks = [round(k * step, 10) + 0.0 for k in range(first, last + 1)]  # + 0.0: no -0.0
    return [float(int(t)) if integer else t for t in ticks]


def _tick_label(value: float) -> str:
    return f"{value:g}"


def bar_chart(
    values: Mapping[str, float],
    *,
    width: int = 300,
    height: int = 170,
    unit: str = "clips",
    x_label: str = "",
) -> dict[str, object]:
    """Bars for an ordered mapping label -> value, every bar labelled, on a count y-axis with
    ticks, its value written above it. Include `_bar_chart.html`."""
    return histogram_chart(
        list(values), list(values.values()), width=width, height=height, max_ticks=len(values),
        unit=unit, x_label=x_label,
    )  # fmt: skip


def histogram_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    width: int = 560,
    height: int = 180,
    max_ticks: int = 12,
    unit: str = "clips",
    x_label: str = "",
) -> dict[str, object]:
    """Bars of many items (clips per vote count, votes per expert) on a count y-axis with round
    ticks; at most `max_ticks` x labels (every k-th), each bar keeps its label and value in a
    tooltip and aria-label. Include `_histogram.html` (or `_bar_chart.html`: the same)."""
    if len(labels) != len(values):
        raise ValueError(f"{len(labels)} labels for {len(values)} values")
    left, right_pad, top_pad = 40, 6, 14
    bottom = 32 if x_label else 20
    plot_w, plot_h = width - left - right_pad, height - bottom - top_pad
    top_value = max((float(v) for v in values), default=0.0)
    integer = all(float(v).is_integer() for v in values)
    ticks = axis_ticks(0.0, top_value, count=5, integer=integer)
    axis_top = ticks[-1]
    base_y = top_pad + plot_h
    slot = plot_w / max(len(values), 1)
    step = max(1, -(-len(values) // max(max_ticks, 1)))  # ceil: every step-th bar is labelled
    focusable = len(values) <= MAX_FOCUSABLE_MARKS
    show_values = slot >= 18
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * float(value) / axis_top
        bars.append(
            {
                "label": label,
                "value": value,
                "x": round(left + i * slot + slot * 0.12, 2),
                "y": round(base_y - h, 2),
                "width": round(max(slot * 0.76, 1.0), 2),
                "height": round(h, 2),
                "text_x": round(left + i * slot + slot / 2, 2),
                "value_y": round(base_y - h - 3, 2),
                "tick": label if i % step == 0 else "",
            }
        )
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right_pad,
        "base_y": base_y,
        "top_y": top_pad,
        "label_y": base_y + 14,
        "x_label": x_label,
        "x_label_y": height - 3,
        "y_ticks": [
            {"y": round(base_y - plot_h * t / axis_top, 2), "label": _tick_label(t)} for t in ticks
        ],
        "unit": unit,
        "total": _number(sum(float(v) for v in values)),
        "focusable": focusable,
        "show_values": show_values,
    }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 3)


def heatmap_chart(
    matrix: Sequence[Sequence[float]],
    *,
    x_edges: Sequence[float],
    y_edges: Sequence[float],
    width: int = 460,
    height: int = 260,
    x_ticks: Sequence[float] = (1, 2, 3, 4, 5),
    y_ticks: Sequence[float] = (0, 0.5, 1, 1.5, 2),
    scale_steps: int = 8,
) -> dict[str, object]:
    """A joint histogram as a grid of cells, matrix[i][j] = count in x bin i and y bin j (the
    layout of numpy.histogram2d, as in figure3_stats' mean_std_hist). Darker = more; an
    empty cell is not drawn. A colour scale at the right maps shades to counts.
    Include `_heatmap.html`."""
    scale_w = 70  # the colour scale's strip, its tick labels and its title
    left, bottom, top_pad, right_pad = 40, 32, 8, 6 + scale_w
    plot_w, plot_h = width - left - right_pad, height - bottom - top_pad
    x0, x1, y0, y1 = x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]

    def sx(x: float) -> float:
        return round(left + plot_w * (x - x0) / (x1 - x0), 2)

    def sy(y: float) -> float:
        return round(top_pad + plot_h * (1 - (y - y0) / (y1 - y0)), 2)

    top = max((float(v) for row in matrix for v in row), default=0.0)
    top_count = max(math.ceil(top), 1)

    def shade(count: float) -> float:
        # Never fully transparent: a bin with one clip must stay visible.
        return round(0.15 + 0.85 * float(count) / top_count, 3)

    cells = [
        {
            "x": sx(x_edges[i]),
            "y": sy(y_edges[j + 1]),
            "width": round(sx(x_edges[i + 1]) - sx(x_edges[i]), 2),
            "height": round(sy(y_edges[j]) - sy(y_edges[j + 1]), 2),
            "opacity": shade(count),
            "count": count,
            "x_range": f"{x_edges[i]:g}–{x_edges[i + 1]:g}",
            "y_range": f"{y_edges[j]:g}–{y_edges[j + 1]:g}",
        }
        for i, row in enumerate(matrix)
        for j, count in enumerate(row)
        if count
    ]
    # The colour scale: a vertical strip from 1 clip (bottom) to the fullest cell (top) in
    # `scale_steps` shades, labelled with round counts.
    base_y = top_pad + plot_h
    strip_x, strip_w = width - scale_w + 6, 14
    n_steps = min(scale_steps, top_count)
    step_h = plot_h / n_steps
    steps = []
    for k in range(n_steps):
        middle = 1 + (top_count - 1) * (k + 0.5) / n_steps if n_steps > 1 else top_count
        steps.append(
            {
                "y": round(base_y - (k + 1) * step_h, 2),
                "height": round(step_h + 0.3, 2),  # overlap a hair: no white seams
                "opacity": shade(middle),
                "label": f"about {round(middle)}",
            }
        )

    def scale_y(count: float) -> float:
        if top_count == 1:
            return round(base_y - plot_h / 2, 2)
        return round(base_y - plot_h * (count - 1) / (top_count - 1), 2)

    # Round inner ticks, and the two ends (1 clip, the fullest cell); an inner tick that
    # would overlap an end's label is dropped.
    ends = (scale_y(1), scale_y(top_count))
    inner = [
        t
        for t in axis_ticks(1.0, float(top_count), count=4, integer=True)
        if 1 < t < top_count and min(abs(scale_y(t) - end) for end in ends) >= 12.0
    ]
    shown = sorted({1.0, float(top_count), *inner})
    return {
        "cells": cells,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right_pad,
        "top_y": top_pad,
        "base_y": base_y,
        "x_ticks": [{"x": sx(t), "label": f"{t:g}"} for t in x_ticks],
        "y_ticks": [{"y": sy(t), "label": f"{t:g}"} for t in y_ticks],
        "x_label_y": height - 4,
        "tick_label_y": base_y + 13,
        "max_count": int(top),
        "scale": {
            "x": strip_x,
            "width": strip_w,
            "top_y": top_pad,
            "base_y": base_y,
            "height": round(plot_h, 2),
            "steps": steps,
            "ticks": [{"y": scale_y(t), "label": f"{t:g}"} for t in shown],
            "tick_x": strip_x + strip_w + 4,
            "title_x": strip_x,
            "title_y": height - 4,
        },
    }


def interval_chart(
    items: Sequence[tuple[str, float | None, float | None, float | None]],
    *,
    low: float = -0.2,
    high: float = 1.0,
    width: int = 480,
    row_height: int = 32,
    confidence: float = 0.95,
) -> dict[str, object]:
    """Estimates with confidence intervals on one axis: items of (label, value, ci_low,
    ci_high); a missing value is listed without a point, a missing CI without whiskers.
    Values outside [low, high] are clipped to the axis. Include `_interval_chart.html`."""
    left, right_pad, top_pad = 110, 64, 8
    plot_w = width - left - right_pad
    ticks = axis_ticks(low, high, count=7)
    low, high = ticks[0], ticks[-1]

    def sx(x: float) -> float:
        return round(left + plot_w * (min(max(x, low), high) - low) / (high - low), 2)

    rows = []
    for k, (label, value, ci_low, ci_high) in enumerate(items):
        y = top_pad + k * row_height + row_height / 2
        has_ci = ci_low is not None and ci_high is not None
        rows.append(
            {
                "label": label,
                "y": y,
                "text_y": y + 4,
                "value": value,
                "x": sx(value) if value is not None else None,
                "ci_low": ci_low,
                "ci_high": ci_high,
                "x_low": sx(ci_low) if has_ci and ci_low is not None else None,
                "x_high": sx(ci_high) if has_ci and ci_high is not None else None,
                "cap_top": y - 5,
                "cap_bottom": y + 5,
            }
        )
    base_y = top_pad + len(items) * row_height
    return {
        "rows": rows,
        "width": width,
        "height": base_y + 22,
        "left": left,
        "right": width - right_pad,
        "value_x": width - right_pad + 8,
        "top_y": top_pad,
        "base_y": base_y,
        "zero_x": sx(0.0) if low < 0 < high else None,
        "ticks": [{"x": sx(t), "label": _tick_label(t)} for t in ticks],
        "tick_label_y": base_y + 14,
        "confidence_percent": round(100 * confidence),
    }


def distribution_bars(
    series: Sequence[tuple[str, Mapping[str, float] | None]],
    *,
    width: int = 320,
    height: int = 150,
) -> dict[str, object]:
    """Grade distributions side by side: for each grade A..E one bar per series, on a fixed
    0..100% axis so charts of different clips compare at a glance.

    series: (label, values by grade) pairs; values may be a distribution or vote counts (each
    series is normalised to sum 1); None or all-zero values draw no bars ("no votes").
    Include `_distribution_bars.html` with chart=distribution_bars([...]); a series' bars get
    the CSS class series-<index> (app.css colours series 0..2).
    """
    left, bottom, top_pad = 38, 18, 14
    plot_w, plot_h = width - left - 4, height - bottom - top_pad
    base_y = top_pad + plot_h
    grades = ("A", "B", "C", "D", "E")
    group_w = plot_w / len(grades)
    n_series = max(len(series), 1)
    bar_w = group_w * 0.8 / n_series
    shares: list[dict[str, float] | None] = []
    for _, values in series:
        total = sum(float(values.get(g, 0.0)) for g in grades) if values else 0.0
        shares.append(
            {g: float(values.get(g, 0.0)) / total for g in grades} if values and total else None
        )
    groups = []
    for gi, grade in enumerate(grades):
        bars = []
        for si, ((label, _), share) in enumerate(zip(series, shares, strict=True)):
            if share is None:
                continue
            h = plot_h * share[grade]
            x = left + gi * group_w + group_w * 0.1 + si * bar_w
            bars.append(
                {
                    "series": si,
                    "series_label": label,
                    "share": share[grade],
                    "percent": round(100 * share[grade]),
                    "x": round(x, 2),
                    "y": round(base_y - h, 2),
                    "width": round(bar_w * 0.92, 2),
                    "height": round(h, 2),
                    "text_x": round(x + bar_w * 0.46, 2),
                    "text_y": round(base_y - h - 2, 2),
                }
            )
        groups.append(
            {"grade": grade, "bars": bars, "label_x": round(left + (gi + 0.5) * group_w, 2)}
        )
    legend = [
        {"series": si, "label": label, "empty": share is None}
        for si, ((label, _), share) in enumerate(zip(series, shares, strict=True))
    ]
    # One sentence for screen readers and keyboard users: the whole chart in numbers.
    summary = "; ".join(
        f"{label}: "
        + (", ".join(f"{g} {round(100 * share[g])}%" for g in grades) if share else "none")
        for (label, _), share in zip(series, shares, strict=True)
    )
    return {
        "groups": groups,
        "legend": legend,
        "width": width,
        "height": height,
        "left": left,
        "right": width - 4,
        "top_y": top_pad,
        "base_y": base_y,
        "y_ticks": [
            {"y": round(base_y - plot_h * t, 2), "label": f"{round(100 * t)}%" if t else "0"}
            for t in axis_ticks(0.0, 1.0, count=3)
        ],
        "half_y": round(top_pad + plot_h / 2, 2),
        "center_x": round(left + plot_w / 2, 2),
        "label_y": height - 4,
        "show_percent": n_series <= 2,
        "empty": all(share is None for share in shares),
        "summary": summary,
    }


def progress_bar(done: int, total: int, *, width: int = 380, height: int = 14) -> dict[str, object]:
    """A horizontal bar filled to done / total, on a 0..100% axis. Include `_progress_bar.html`."""
    share = done / total if total else 0.0
    return {
        "width": width,
        "height": height,
        "svg_height": height + 18,
        "fill_width": round(width * share, 2),
        "percent": round(100 * share, 1),
        "done": done,
        "open": total - done,
        "total": total,
        "ticks": [
            {"x": round(width * t, 2), "label": f"{round(100 * t)}%"}
            for t in axis_ticks(0.0, 1.0, count=5)
        ],
        "tick_label_y": height + 15,
    }


def line_chart(
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    x_labels: Sequence[str],
    low: float,
    high: float,
    width: int = 520,
    height: int = 200,
    x_label: str = "",
    reference: tuple[str, float] | None = None,
) -> dict[str, object]:
    """Lines with a point per x (sessions, epochs) on a [low, high] axis widened to round ticks
    and to any value outside it; a None value leaves a gap in its line. Each point is
    labelled with its value while there are few; a series of one point is drawn as a short
    level mark, so a single session reads as values, not as lone dots. `reference` (label,
    value) draws a dashed horizontal line (e.g. the qualifying bar). Include `_line_chart.html`;
    series get the class series-<i>."""
    known = [v for _, values in series for v in values if v is not None]
    if reference is not None:
        known.append(reference[1])
    ticks = axis_ticks(min([low, *known]), max([high, *known]), count=5)
    low, high = ticks[0], ticks[-1]
    left, top_pad, right_pad = 40, 12, 14
    bottom = 34 if x_label else 22
    plot_w, plot_h = width - left - right_pad, height - bottom - top_pad
    n_x = len(x_labels)
    # A single x sits in the middle; several spread across with half a slot of margin.
    slot = plot_w / max(n_x, 1)

    def sx(i: int) -> float:
        return round(left + slot * (i + 0.5), 2)

    def sy(v: float) -> float:
        return round(top_pad + plot_h * (1 - (min(max(v, low), high) - low) / (high - low)), 2)

    label_points = n_x <= 12
    lines: list[dict[str, object]] = []
    n_points = 0
    for si, (label, values) in enumerate(series):
        known_points = [(i, v) for i, v in enumerate(values) if v is not None]
        n_points += len(known_points)
        level = None
        if len(known_points) == 1:
            half = min(slot * 0.35, 60.0)
            centre = sx(known_points[0][0])
            level = {"x1": round(centre - half, 2), "x2": round(centre + half, 2)}
        points = []
        for i, v in known_points:
            if level is not None:
                # One session: its value at the right end of the level mark, clear of the other.
                text_x, text_y, anchor = level["x2"] + 6, sy(v) + 4, "start"
            else:
                # Labels of the two series go on opposite sides of their point.
                text_x, text_y, anchor = sx(i), sy(v) + (-8 if si % 2 == 0 else 15), "middle"
            points.append(
                {
                    "x": sx(i),
                    "y": sy(v),
                    "value": round(v, 2),
                    "label": x_labels[i],
                    "text_x": round(text_x, 2),
                    "text_y": round(text_y, 2),
                    "anchor": anchor,
                }
            )
        path = " ".join(f"{'M' if k == 0 else 'L'}{p['x']},{p['y']}" for k, p in enumerate(points))
        lines.append({"series": si, "label": label, "points": points, "path": path, "level": level})
    base_y = top_pad + plot_h
    return {
        "lines": lines,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right_pad,
        "top_y": top_pad,
        "base_y": base_y,
        "y_ticks": [{"y": sy(v), "label": _tick_label(v)} for v in ticks],
        "x_ticks": [{"x": sx(i), "label": x} for i, x in enumerate(x_labels)],
        "label_y": base_y + 14,
        "x_label": x_label,
        "x_label_y": height - 3,
        "label_points": label_points,
        "focusable": n_points <= MAX_FOCUSABLE_MARKS,
        "reference": (
            {"label": reference[0], "value": reference[1], "y": sy(reference[1])}
            if reference is not None
            else None
        ),
        "empty": not known or n_x == 0,
    }
