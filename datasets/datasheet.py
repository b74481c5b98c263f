"""The datasheet (README.md) of a dataset export, rendered as deterministic Markdown.

Every mapping is rendered in sorted key order and every number with one fixed format, so the
same inputs give the same bytes and the export's content hash stays stable.

Plain Python/pandas, no Django.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence

import pandas as pd

from annotation.grades import GRADES
from datasets.export import MANIFEST_NAME, PARQUET_DIR, README_NAME, TABLES

# Keys that hold the point estimate of an agreement measure, in order of preference; "alpha"
# lets `dataclasses.asdict(annotation.aggregation.agreement.AlphaEstimate)` be passed as it is.
ESTIMATE_KEYS: tuple[str, ...] = ("estimate", "alpha", "kappa", "value")
_CI_KEYS = ("ci_low", "ci_high", "confidence")


def render_datasheet(
    *,
    name: str,
    content_hash_note: str,
    counts: Mapping[str, object],
    figure3: Mapping[str, object],
    agreement: Mapping[str, object],
    fold_balance: pd.DataFrame,
    filters: Mapping[str, object],
    generation: Mapping[str, object],
    licence: str,
) -> str:
    """The datasheet of one dataset version, as Markdown ending in a newline.

    - ``counts``: e.g. clips, patients, ratings, raters.
    - ``figure3``: the statistics of the paper's figure 3, e.g.
      `annotation.aggregation.distributions.figure3_stats`: its joint histogram
      (``mean_std_hist`` with ``mean_edges`` and ``std_edges``) becomes a table, every other
      key a list item; a mapping keyed by grades A..E is written on one line in grade order.
    - ``agreement``: measure -> a number, or a mapping with an estimate (under one of
      ``ESTIMATE_KEYS``), ``ci_low``, ``ci_high`` and optionally ``confidence`` (default 0.95);
      other keys of the mapping are listed as details.
    - ``fold_balance``: `FoldAssignment.balance_table()` (rows folds, columns A..E, total).
    - ``filters``, ``generation``: how the clips were selected and the version was built.
    - ``content_hash_note``: optional extra text for the content-hash section ("" for none).

    The datasheet cannot contain the content hash (it is itself hashed); it says how to
    compute it.
    """
    sections = [
        f"# {name}",
        "Datasheet of a frozen dataset version of the multi-expert sperm video grading "
        "platform: clips, the experts' grades A (good) .. E (bad), grade distributions and "
        "cross-validation folds.",
        "## Content hash",
        _content_hash_text(content_hash_note),
        "## Counts",
        _bullets(counts),
        "## Grade distribution statistics",
        _figure3_text(figure3),
        "## Agreement between experts",
        _agreement_table(agreement),
        "## Fold balance",
        "Clips per grade-mode class in each outer cross-validation fold (no patient is in two "
        "folds; `inner_splits` holds each outer training part's train/val split).",
        _markdown_table(fold_balance),
        "## Selection filters",
        _bullets(filters),
        "## Generation settings",
        _bullets(generation),
        "## Files",
        _files_text(),
        "## Licence",
        licence.strip() or "_No licence given._",
    ]
    return "\n\n".join(s.strip("\n") for s in sections) + "\n"


def _content_hash_text(note: str) -> str:
    text = (
        f"The content hash of this version is the SHA-256 of `{MANIFEST_NAME}`. The manifest "
        f"lists the SHA-256 of every other file, this {README_NAME} included, so the hash pins "
        f"every byte of the export (which is why it cannot appear here). Compute it with "
        f"`sha256sum {MANIFEST_NAME}`; check every file with `sha256sum -c {MANIFEST_NAME}`."
    )
    return f"{text}\n\n{note.strip()}" if note.strip() else text


_JOINT_HISTOGRAM_KEYS = ("mean_edges", "std_edges", "mean_std_hist")


def _figure3_text(figure3: Mapping[str, object]) -> str:
    if not all(k in figure3 for k in _JOINT_HISTOGRAM_KEYS):
        return _bullets(figure3)
    mean_edges, std_edges, counts = (figure3[k] for k in _JOINT_HISTOGRAM_KEYS)
    # The figure's values come from the summary's JSON: edges are lists of numbers here.
    table = pd.DataFrame(
        counts,
        index=pd.Index(_bin_labels(mean_edges), name="mean / std"),  # type: ignore[arg-type]
        columns=_bin_labels(std_edges),  # type: ignore[arg-type]
    )
    rest = {k: v for k, v in figure3.items() if k not in _JOINT_HISTOGRAM_KEYS}
    return "\n\n".join(
        [
            _bullets(rest),
            "Clips per mean grade score (rows, A=1 .. E=5) and standard deviation of the "
            "grade scores (columns):",
            _markdown_table(table),
        ]
    )


def _bin_labels(edges: Sequence[float]) -> list[str]:
    return [f"{_format_value(lo)}..{_format_value(hi)}" for lo, hi in itertools.pairwise(edges)]


def _files_text() -> str:
    lines = [
        f"- `{table}.csv` and `{PARQUET_DIR}/{table}.parquet`: "
        + ", ".join(column.name for column in spec.columns)
        for table, spec in TABLES.items()
    ]
    lines.append(
        "- CSV: UTF-8, LF line endings, rows sorted by key, floats in shortest round-trip form, "
        "empty field = missing. Parquet: the same tables with exact types."
    )
    lines.append(f"- `{MANIFEST_NAME}`: `<sha256>  <path>` for every other file, sorted by path.")
    return "\n".join(lines)


# --- formatting ----------------------------------------------------------------------------


def _format_value(value: object) -> str:
    """One fixed text form per value: 4 significant digits for floats, 'n/a' for missing."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return "n/a"
        return f"{number:.0f}" if abs(number) >= 1e4 else f"{number:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_format_value(value[k])}" for k in _ordered_keys(value))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return " ".join(str(value).split())  # one line: newlines would break lists and tables


def _ordered_keys(mapping: Mapping[str, object]) -> list[str]:
    """Grades in grade order (A..E), anything else sorted."""
    keys = list(mapping)
    if keys and set(keys) <= set(GRADES):
        return [g for g in GRADES if g in mapping]
    return sorted(keys, key=str)


def _label(key: object) -> str:
    return str(key).replace("_", " ")


def _bullets(mapping: Mapping[str, object], indent: int = 0) -> str:
    if not mapping:
        return " " * indent + "- _none_"
    lines = []
    for key in _ordered_keys(mapping):
        value = mapping[key]
        nested = isinstance(value, Mapping) and value and not set(value) <= set(GRADES)
        if nested:
            lines.append(f"{' ' * indent}- {_label(key)}:")
            lines.append(_bullets(value, indent + 2))  # type: ignore[arg-type]  # a Mapping: nested
        else:
            lines.append(f"{' ' * indent}- {_label(key)}: {_format_value(value)}")
    return "\n".join(lines)


def _cell(value: object) -> str:
    return _format_value(value).replace("|", "\\|")


def _markdown_table(frame: pd.DataFrame) -> str:
    index_name = frame.index.name or ""
    header = [index_name, *map(str, frame.columns)]
    rows = [
        [idx, *row] for idx, row in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows),
    ]
    return "\n".join(lines)


def _agreement_table(agreement: Mapping[str, object]) -> str:
    if not agreement:
        return "- _none_"
    rows = []
    for measure in sorted(agreement):
        entry = agreement[measure]
        if not isinstance(entry, Mapping):
            rows.append([_label(measure), _format_value(entry), "", ""])
            continue
        estimate_key = next((k for k in ESTIMATE_KEYS if k in entry), None)
        estimate = entry[estimate_key] if estimate_key is not None else None
        interval = ""
        if "ci_low" in entry and "ci_high" in entry:
            level = float(entry.get("confidence", 0.95))
            interval = (
                f"{level * 100:g}% CI {_format_value(entry['ci_low'])} .. "
                f"{_format_value(entry['ci_high'])}"
            )
        details = {k: v for k, v in entry.items() if k != estimate_key and k not in _CI_KEYS}
        rows.append([_label(measure), _format_value(estimate), interval, _format_value(details)])
    frame = pd.DataFrame(
        [row[1:] for row in rows],
        index=pd.Index([row[0] for row in rows], name="measure"),
        columns=["estimate", "confidence interval", "details"],
    )
    return _markdown_table(frame)
