"""Geometry for small server-rendered SVG charts (no JavaScript, no inline styles: CSP-safe)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def bar_chart(
    values: Mapping[str, float], *, width: int = 260, height: int = 120, label_space: int = 18
) -> dict[str, object]:
    """Bars for an ordered mapping label -> value, scaled to the largest value."""
    items = list(values.items())
    top = max((float(v) for _, v in items), default=0.0) or 1.0
    slot = width / max(len(items), 1)
    plot_height = height - label_space
    bars = []
    for i, (label, value) in enumerate(items):
        h = plot_height * float(value) / top
        bars.append(
            {
                "label": label,
                "value": value,
                "x": round(i * slot + slot * 0.15, 2),
                "y": round(plot_height - h, 2),
                "width": round(slot * 0.7, 2),
                "height": round(h, 2),
                "text_x": round(i * slot + slot / 2, 2),
                "text_y": height - 4,
            }
        )
    return {"bars": bars, "width": width, "height": height}


# --- charts of the curator dashboard and the clip page ------------------------------------------
# Each function returns plain numbers for one template include in frontend/templates/frontend/;
# colours come from CSS classes in app.css, never from style attributes (CSP).


def _ticks(n_items: int, max_ticks: int) -> set[int]:
    """Indices of the items that get an axis label: every k-th, at most max_ticks of them."""
    step = max(1, -(-n_items // max_ticks))  # ceil division
    return set(range(0, n_items, step))


def histogram_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    width: int = 560,
    height: int = 150,
    max_ticks: int = 12,
) -> dict[str, object]:
    """Bars of many items (clips per vote count, votes per expert) with sparse axis labels;
    every bar keeps its label and value in a tooltip. Include `_histogram.html`."""
    left, bottom, top_pad = 34, 18, 6
    plot_w, plot_h = width - left - 4, height - bottom - top_pad
    top = max((float(v) for v in values), default=0.0) or 1.0
    slot = plot_w / max(len(values), 1)
    shown = _ticks(len(values), max_ticks)
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * float(value) / top
        bars.append(
            {
                "label": label,
                "value": value,
                "x": round(left + i * slot + slot * 0.1, 2),
                "y": round(top_pad + plot_h - h, 2),
                "width": round(max(slot * 0.8, 1.0), 2),
                "height": round(h, 2),
                "text_x": round(left + i * slot + slot / 2, 2),
                "tick": label if i in shown else "",
            }
        )
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "left": left,
        "right": width - 4,
        "base_y": top_pad + plot_h,
        "top_y": top_pad,
        "label_y": height - 4,
        "y_max": round(top, 3) if top != int(top) else int(top),
        "y_max_label_y": top_pad + 9,
    }


def heatmap_chart(
    matrix: Sequence[Sequence[float]],
    *,
    x_edges: Sequence[float],
    y_edges: Sequence[float],
    width: int = 380,
    height: int = 250,
    x_ticks: Sequence[float] = (1, 2, 3, 4, 5),
    y_ticks: Sequence[float] = (0, 0.5, 1, 1.5, 2),
) -> dict[str, object]:
    """A joint histogram as a grid of cells, matrix[i][j] = count in x bin i and y bin j (the
    layout of numpy.histogram2d, as in figure3_stats' mean_std_hist). Darker = more; an
    empty cell is not drawn. Include `_heatmap.html`."""
    left, bottom, top_pad, right_pad = 38, 30, 6, 6
    plot_w, plot_h = width - left - right_pad, height - bottom - top_pad
    x0, x1, y0, y1 = x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]

    def sx(x: float) -> float:
        return round(left + plot_w * (x - x0) / (x1 - x0), 2)

    def sy(y: float) -> float:
        return round(top_pad + plot_h * (1 - (y - y0) / (y1 - y0)), 2)

    top = max((float(v) for row in matrix for v in row), default=0.0) or 1.0
    cells = [
        {
            "x": sx(x_edges[i]),
            "y": sy(y_edges[j + 1]),
            "width": round(sx(x_edges[i + 1]) - sx(x_edges[i]), 2),
            "height": round(sy(y_edges[j]) - sy(y_edges[j + 1]), 2),
            # Never fully transparent: a bin with one clip must stay visible.
            "opacity": round(0.15 + 0.85 * float(count) / top, 3),
            "count": count,
            "x_range": f"{x_edges[i]:g}–{x_edges[i + 1]:g}",
            "y_range": f"{y_edges[j]:g}–{y_edges[j + 1]:g}",
        }
        for i, row in enumerate(matrix)
        for j, count in enumerate(row)
        if count
    ]
    return {
        "cells": cells,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right_pad,
        "top_y": top_pad,
        "base_y": top_pad + plot_h,
        "x_ticks": [{"x": sx(t), "label": f"{t:g}"} for t in x_ticks],
        "y_ticks": [{"y": sy(t), "label": f"{t:g}"} for t in y_ticks],
        "x_label_y": height - 4,
        "tick_label_y": top_pad + plot_h + 13,
        "max_count": int(top),
    }


def interval_chart(
    items: Sequence[tuple[str, float | None, float | None, float | None]],
    *,
    low: float = -0.2,
    high: float = 1.0,
    width: int = 380,
    row_height: int = 26,
) -> dict[str, object]:
    """Estimates with confidence intervals on one axis: items of (label, value, ci_low,
    ci_high); a missing value is listed without a point, a missing CI without whiskers.
    Values outside [low, high] are clipped to the axis. Include `_interval_chart.html`."""
    left, right_pad, top_pad = 110, 10, 8
    plot_w = width - left - right_pad

    def sx(x: float) -> float:
        return round(left + plot_w * (min(max(x, low), high) - low) / (high - low), 2)

    rows = []
    for k, (label, value, ci_low, ci_high) in enumerate(items):
        y = top_pad + k * row_height + row_height / 2
        rows.append(
            {
                "label": label,
                "y": y,
                "text_y": y + 4,
                "value": value,
                "x": sx(value) if value is not None else None,
                "ci_low": ci_low,
                "ci_high": ci_high,
                "x_low": sx(ci_low) if ci_low is not None and ci_high is not None else None,
                "x_high": sx(ci_high) if ci_low is not None and ci_high is not None else None,
            }
        )
    base_y = top_pad + len(items) * row_height
    n_ticks = round((high - low) / 0.2)
    ticks = [round(low + 0.2 * t, 1) for t in range(n_ticks + 1)]
    return {
        "rows": rows,
        "width": width,
        "height": base_y + 20,
        "left": left,
        "right": width - right_pad,
        "top_y": top_pad,
        "base_y": base_y,
        "zero_x": sx(0.0),
        "ticks": [{"x": sx(t), "label": f"{t:g}"} for t in ticks],
        "tick_label_y": base_y + 14,
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
                    "y": round(top_pad + plot_h - h, 2),
                    "width": round(bar_w * 0.92, 2),
                    "height": round(h, 2),
                    "text_x": round(x + bar_w * 0.46, 2),
                    "text_y": round(top_pad + plot_h - h - 2, 2),
                }
            )
        groups.append(
            {"grade": grade, "bars": bars, "label_x": round(left + (gi + 0.5) * group_w, 2)}
        )
    legend = [
        {"series": si, "label": label, "empty": share is None}
        for si, ((label, _), share) in enumerate(zip(series, shares, strict=True))
    ]
    return {
        "groups": groups,
        "legend": legend,
        "width": width,
        "height": height,
        "left": left,
        "right": width - 4,
        "top_y": top_pad,
        "base_y": top_pad + plot_h,
        "half_y": round(top_pad + plot_h / 2, 2),
        "center_x": round(left + plot_w / 2, 2),
        "label_y": height - 4,
        "show_percent": n_series <= 2,
        "empty": all(share is None for share in shares),
    }


def progress_bar(done: int, total: int, *, width: int = 380, height: int = 14) -> dict[str, object]:
    """A horizontal bar filled to done / total. Include `_progress_bar.html`."""
    share = done / total if total else 0.0
    return {
        "width": width,
        "height": height,
        "fill_width": round(width * share, 2),
        "percent": round(100 * share, 1),
        "done": done,
        "total": total,
    }


def line_chart(
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    x_labels: Sequence[str],
    low: float,
    high: float,
    width: int = 480,
    height: int = 180,
) -> dict[str, object]:
    """Lines with a point per x (sessions, epochs) on a fixed [low, high] axis; a None value
    leaves a gap in its line. Include `_line_chart.html`; series get the class series-<i>."""
    left, bottom, top_pad, right_pad = 38, 20, 8, 10
    plot_w, plot_h = width - left - right_pad, height - bottom - top_pad
    step = plot_w / max(len(x_labels) - 1, 1)

    def sy(v: float) -> float:
        return round(top_pad + plot_h * (1 - (min(max(v, low), high) - low) / (high - low)), 2)

    lines = []
    for si, (label, values) in enumerate(series):
        points = [
            {"x": round(left + i * step, 2), "y": sy(v), "value": round(v, 3), "label": x_labels[i]}
            for i, v in enumerate(values)
            if v is not None
        ]
        path = " ".join(f"{'M' if k == 0 else 'L'}{p['x']},{p['y']}" for k, p in enumerate(points))
        lines.append({"series": si, "label": label, "points": points, "path": path})
    return {
        "lines": lines,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right_pad,
        "top_y": top_pad,
        "base_y": top_pad + plot_h,
        "y_ticks": [{"y": sy(v), "label": f"{v:g}"} for v in (low, (low + high) / 2, high)],
        "x_ticks": [{"x": round(left + i * step, 2), "label": x} for i, x in enumerate(x_labels)],
        "label_y": height - 4,
    }
