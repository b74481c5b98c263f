"""The exchange format, written once: the files and columns of a rated dataset (what
`import_dataset` reads and the simulator writes) and of a dataset version's export (what
`export_dataset` writes and `modeling.ml.data` reads)::

    clips.csv          clip_id, patient_id, video, fps, x, y [, pixel_size_um]
                       (an export adds the kinematics: vcl, vsl, ..., bcf, speed)
    ratings.csv        clip_id, rater_id, grade            (grade in A..E)
    videos/...         the full-field videos named in clips.csv (paths relative to the folder)
    distributions.csv  clip_id, p_A..p_E, n, mean, std, mode      (exports only)
    splits.csv         clip_id, fold                               (exports only)
    inner_splits.csv   outer_fold, clip_id, subset (train or val)  (exports only)

x, y = centre of the target sperm in frame 0, in pixels of the video.

Why here: the importer (annotation), the simulator's writer, the exporter (datasets) and the
training loader (modeling.ml) all read these names, and an app imports only from apps to its
left (annotation <- datasets <- modeling), so the one owner lives in annotation. Plain
constants and Python, no Django, no pandas: ``modeling.ml`` and tools on an exported folder
import it alone. The exporter's types and sort orders (datasets/export.py) are built on these
columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from annotation.grades import GRADES, PROB_COLUMNS
from annotation.ingest.kinematics import KINEMATICS_KEYS

ColumnKind = Literal["str", "float", "int"]


@dataclass(frozen=True)
class Column:
    """One column of an exchange table: its type and whether a row may leave it empty."""

    name: str
    kind: ColumnKind
    nullable: bool = False


CLIPS_FILE = "clips.csv"
RATINGS_FILE = "ratings.csv"
VIDEOS_DIR = "videos"
DISTRIBUTIONS_FILE = "distributions.csv"
SPLITS_FILE = "splits.csv"
INNER_SPLITS_FILE = "inner_splits.csv"

# clips.csv of a rated dataset: the columns every row needs, then the optional ones.
CLIP_REQUIRED: tuple[Column, ...] = (
    Column("clip_id", "str"),
    Column("patient_id", "str"),
    Column("video", "str"),
    Column("fps", "float"),
    Column("x", "float"),
    Column("y", "float"),
)
CLIP_OPTIONAL: tuple[Column, ...] = (Column("pixel_size_um", "float", nullable=True),)
# An export's clips.csv adds the measured kinematics (empty where a clip has none).
CLIP_KINEMATICS: tuple[Column, ...] = tuple(
    Column(key, "float", nullable=True) for key in KINEMATICS_KEYS
)
EXPORT_CLIP_COLUMNS: tuple[Column, ...] = CLIP_REQUIRED + CLIP_OPTIONAL + CLIP_KINEMATICS

RATING_COLUMNS: tuple[Column, ...] = (
    Column("clip_id", "str"),
    Column("rater_id", "str"),
    Column("grade", "str"),  # one of GRADE_VALUES
)
GRADE_VALUES: frozenset[str] = frozenset(GRADES)

DISTRIBUTION_COLUMNS: tuple[Column, ...] = (
    Column("clip_id", "str"),
    *(Column(p, "float") for p in PROB_COLUMNS),
    Column("n", "int"),
    Column("mean", "float"),
    Column("std", "float"),
    Column("mode", "str"),  # one of GRADE_VALUES
)
SPLIT_COLUMNS: tuple[Column, ...] = (Column("clip_id", "str"), Column("fold", "int"))
INNER_SPLIT_COLUMNS: tuple[Column, ...] = (
    Column("outer_fold", "int"),
    Column("clip_id", "str"),
    Column("subset", "str"),  # one of SUBSET_VALUES
)
SUBSET_VALUES: frozenset[str] = frozenset({"train", "val"})


def names(columns: Iterable[Column]) -> tuple[str, ...]:
    """The names of ``columns``, in their order."""
    return tuple(c.name for c in columns)


CLIP_REQUIRED_NAMES = names(CLIP_REQUIRED)
RATING_NAMES = names(RATING_COLUMNS)


def missing_columns(header: Iterable[str], required: Iterable[str]) -> list[str]:
    """The ``required`` column names that ``header`` lacks, in the order of ``required``."""
    present = {str(h).strip() for h in header}
    return [name for name in required if name not in present]
