"""Import of a rated data set in the exchange format, and its bad inputs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.access.roles import user_role
from annotation.ingest.services import clip_vote_counts_recount
from annotation.models import Clip, Patient, Rating, RatingChange, Video
from datasets.models import DatasetVersion
from datasets.services import clip_export_id
from tests.conftest import copy_dataset

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, ...]:
    return (
        Patient.objects.count(),
        Video.objects.count(),
        Clip.objects.count(),
        Rating.objects.count(),
        RatingChange.objects.count(),
    )


def _rewrite(path: Path, edit) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows, fields = edit(rows, list(rows[0].keys()))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_import_creates_clips_ratings_and_expert_raters(synthetic_small: Path) -> None:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    truth = pd.read_csv(synthetic_small / "ratings.csv")
    assert Clip.objects.count() == 6
    assert Rating.objects.count() == len(truth)
    assert RatingChange.objects.count() == len(truth)
    rater = Rating.objects.select_related("rater").first().rater
    assert user_role(rater) == "expert" and not rater.has_usable_password()
    clip = Clip.objects.get(external_id="c0001")
    expected = truth[truth.clip_id == "c0001"].grade.value_counts()
    assert clip.votes_total == int(expected.sum())
    assert clip.votes_a == int(expected.get("A", 0))
    assert clip_vote_counts_recount() == 0  # counts already equal a recount
    assert Path(clip.frames_file.path).is_file() and Path(clip.crop_file.path).is_file()
    frames = np.load(clip.frames_file.path)
    assert frames.shape == (16, 150, 150) and frames.dtype == np.uint8


def test_import_tracks_clips_close_to_the_generators_true_tracks(synthetic_small: Path) -> None:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    tracks = pd.read_csv(synthetic_small / "truth_tracks.csv")
    errors = []
    for clip in Clip.objects.all():
        truth = tracks[tracks.clip_id == clip.external_id].sort_values("frame")
        true_xy = truth[["x", "y"]].to_numpy()[: clip.n_frames]
        errors.append(np.linalg.norm(np.asarray(clip.track) - true_xy, axis=1))
    assert float(np.mean(np.concatenate(errors))) <= 2.0


def test_importing_twice_adds_nothing_the_second_time(synthetic_small: Path) -> None:
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    before = _counts()
    call_command("import_dataset", str(synthetic_small), "--no-progress")
    assert _counts() == before


def _set(path: Path, index: int, **changes: str) -> None:
    """Change some fields of one data row (0-based) of a CSV file."""

    def edit(rows: list[dict], fields: list[str]) -> tuple[list[dict], list[str]]:
        rows[index] = {**rows[index], **changes}
        return rows, fields

    _rewrite(path, edit)


def _drop_column(path: Path, column: str) -> None:
    def edit(rows: list[dict], fields: list[str]) -> tuple[list[dict], list[str]]:
        return [{k: v for k, v in r.items() if k != column} for r in rows], [
            k for k in fields if k != column
        ]

    _rewrite(path, edit)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_column", "clips.csv line 1: missing column(s) fps"),
        ("unknown_grade", "grade 'F' is not one of A, B, C, D, E"),
        ("duplicate_rating", "already rated clip"),
        ("missing_video", "video file 'videos/nowhere.mp4' not found"),
        ("point_outside", "lies outside the 400x300 frame"),
        ("not_a_video", "not a readable video"),
        ("path_escape", "must be a relative path inside DIR"),
        ("unknown_clip", "is not in clips.csv"),
        ("rater_not_a_user_name", "rater_id '-r07' must be 1-64 letters"),
        ("rater_with_space", "rater_id 'r 07' must be 1-64 letters"),
    ],
)
def test_a_bad_data_set_names_the_problem_and_writes_nothing(
    synthetic_small: Path, tmp_path: Path, settings, case: str, message: str
) -> None:
    root = copy_dataset(synthetic_small, tmp_path / "data")
    clips, ratings = root / "clips.csv", root / "ratings.csv"
    if case == "missing_column":
        _drop_column(clips, "fps")
    elif case == "unknown_grade":
        _set(ratings, 3, grade="F")
    elif case == "duplicate_rating":
        _rewrite(ratings, lambda rows, f: ([*rows, rows[0]], f))
    elif case == "missing_video":
        _set(clips, 1, video="videos/nowhere.mp4")
    elif case == "point_outside":
        _set(clips, 2, x="950")
    elif case == "not_a_video":
        (root / "videos" / "v0002.mp4").write_text("<html><script>alert(1)</script></html>")
    elif case == "path_escape":
        _set(clips, 0, video="../../etc/passwd")
    elif case == "unknown_clip":
        _rewrite(ratings, lambda rows, f: ([*rows, {**rows[0], "clip_id": "c9999"}], f))
    elif case == "rater_not_a_user_name":  # raters become accounts: the user-name rule holds
        _set(ratings, 0, rater_id="-r07")
    elif case == "rater_with_space":
        _set(ratings, 0, rater_id="r 07")
    before = _counts()
    with pytest.raises(CommandError) as info:
        call_command("import_dataset", str(root), "--no-progress")
    assert message in str(info.value)
    assert _counts() == before
    clips_dir = Path(settings.MEDIA_ROOT) / "clips"
    assert not clips_dir.exists() or not any(clips_dir.iterdir())


def test_a_target_lost_mid_track_fails_the_import_and_writes_nothing(
    synthetic_small: Path, tmp_path: Path
) -> None:
    root = copy_dataset(synthetic_small, tmp_path / "data")
    # Point the target at empty background: nothing to track, so the track is lost.
    _set(root / "clips.csv", 0, x="3", y="3")
    before = _counts()
    with pytest.raises(CommandError, match="c0001"):
        call_command("import_dataset", str(root), "--no-progress")
    assert _counts() == before


def test_skip_untrackable_leaves_out_a_lost_target_and_its_ratings(
    synthetic_small: Path, tmp_path: Path
) -> None:
    root = copy_dataset(synthetic_small, tmp_path / "data")
    _set(root / "clips.csv", 0, x="3", y="3")
    out = io.StringIO()
    call_command("import_dataset", str(root), "--no-progress", "--skip-untrackable", stdout=out)
    assert "skipped clips.csv line 2" in out.getvalue() and "c0001" in out.getvalue()
    assert not Clip.objects.filter(external_id="c0001").exists()
    assert Clip.objects.count() == 5
    ratings = pd.read_csv(root / "ratings.csv")
    assert Rating.objects.count() == int((ratings.clip_id != "c0001").sum())


def test_each_clips_pixel_size_reaches_the_frozen_version_and_its_export(
    synthetic_small: Path, tmp_path: Path, settings
) -> None:
    # Three videos at another recorded scale, one without any (the default is assumed).
    root = copy_dataset(synthetic_small, tmp_path / "scaled")

    def scales(rows: list[dict], fields: list[str]) -> tuple[list[dict], list[str]]:
        for i, row in enumerate(rows):
            row["pixel_size_um"] = "0.45" if i < 3 else ("" if i == 3 else row["pixel_size_um"])
        return rows, fields

    _rewrite(root / "clips.csv", scales)
    out = io.StringIO()
    call_command("import_dataset", str(root), "--no-progress", stdout=out)
    assert "1 clip(s) had no pixel_size_um in clips.csv" in out.getvalue()
    assert f"default {settings.DEFAULT_PIXEL_SIZE_UM} µm/px" in out.getvalue()
    recorded = dict(Clip.objects.values_list("external_id", "video__pixel_size_um"))
    given = pd.read_csv(root / "clips.csv", dtype={"clip_id": str})
    expected = {
        c: (p if p == p else settings.DEFAULT_PIXEL_SIZE_UM)
        for c, p in zip(given["clip_id"], given["pixel_size_um"], strict=True)
    }
    assert recorded == expected and sorted(set(recorded.values())) == [0.45, 0.5]

    settings.EXPORT_ROOT = tmp_path / "exports"
    call_command("build_dataset", "scaled", "--no-progress")
    version = DatasetVersion.objects.get(name="scaled")
    frozen = {d.clip.external_id: d.pixel_size_um for d in version.clips.select_related("clip")}
    assert frozen == recorded
    call_command("export_dataset", "scaled", "--out", str(tmp_path / "export"))
    exported = pd.read_csv(tmp_path / "export" / "clips.csv", dtype={"clip_id": str})
    by_export_id = dict(zip(exported["clip_id"], exported["pixel_size_um"], strict=True))
    # The export names clips by its own ids; each row keeps its clip's recorded pixel size.
    assert by_export_id == {clip_export_id(version, c): p for c, p in recorded.items()}
