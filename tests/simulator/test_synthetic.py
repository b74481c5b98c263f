"""The synthetic MERSV-like generator: files, pixels, motion and votes.

Run without Django: ``pytest -p no:django tests/simulator``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import map_coordinates

from annotation.grades import GRADES, PROB_COLUMNS
from simulator.synthetic import (
    MAGNIFICATIONS_UM_PER_PX,
    Bounds,
    SyntheticConfig,
    cell_sample,
    cell_track_sample,
    generate_dataset,
    heads_frame0,
    load_truth,
    main,
    render_target_frames,
    sample_labels,
)

SMALL = SyntheticConfig(n_clips=6, n_experts=12, width=320, height=240, n_frames=20, seed=3)
# No other cells or debris: nothing can cover the target, so its pixels can be checked.
CLEAN = replace(SMALL, n_clips=30, n_distractors=0, n_debris=0, seed=5)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("small"), SMALL)


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("clean"), CLEAN)


def _video_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., 0])
    capture.release()
    return frames


def _head_position(frame: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Where the head is drawn near a point: the darkest spot of the smoothed image within
    7 px, then the centroid of |image - local background| (dark core and bright halo) within
    6 px of that spot."""
    x0, y0 = max(round(near[0]) - 16, 0), max(round(near[1]) - 16, 0)
    grey = frame[y0 : y0 + 33, x0 : x0 + 33].astype(np.float32)  # local window
    local = np.asarray(near) - (x0, y0)
    rows, columns = np.mgrid[: grey.shape[0], : grey.shape[1]]
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.5)
    smooth[np.hypot(columns - local[0], rows - local[1]) > 7] = np.inf
    row, column = np.unravel_index(smooth.argmin(), smooth.shape)
    disc = np.hypot(columns - column, rows - row) <= 6
    weight = np.abs(grey - np.median(grey)) * disc
    centroid = np.array([(weight * columns).sum(), (weight * rows).sum()]) / weight.sum()
    return centroid + np.array([x0, y0])


def test_the_same_seed_writes_the_same_files_and_frames(tmp_path: Path) -> None:
    config = replace(SMALL, n_clips=2, width=160, height=120, n_frames=6)
    first = generate_dataset(tmp_path / "a", config)
    second = generate_dataset(tmp_path / "b", config)
    for name in ("clips.csv", "ratings.csv", "truth_clips.csv", "truth_tracks.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for video in sorted((first / "videos").iterdir()):
        frames_a = _video_frames(video)
        frames_b = _video_frames(second / "videos" / video.name)
        assert len(frames_a) == 6
        assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))
    other = generate_dataset(tmp_path / "c", replace(config, seed=config.seed + 1))
    assert (other / "truth_tracks.csv").read_bytes() != (first / "truth_tracks.csv").read_bytes()


def test_the_exchange_and_truth_files_have_the_documented_columns(small_dataset: Path) -> None:
    tables = load_truth(small_dataset)
    assert list(tables["clips"].columns) == [
        "clip_id", "patient_id", "video", "fps", "x", "y", "pixel_size_um"
    ]  # fmt: skip
    assert list(tables["ratings"].columns) == ["clip_id", "rater_id", "grade"]
    assert list(tables["truth_clips"].columns) == [
        "clip_id", "quality", "motility", "morphology", "motion_type", "head_shape",
        "n_vacuoles", *PROB_COLUMNS,
    ]  # fmt: skip
    assert list(tables["truth_tracks"].columns) == ["clip_id", "frame", "x", "y"]
    assert list(tables["truth_experts"].columns) == ["rater_id", "severity", "noise"]
    clips = tables["clips"]
    assert clips.clip_id.tolist() == [f"c{i:04d}" for i in range(1, 7)]
    assert clips.patient_id.str.fullmatch(r"P\d{4}").all()
    assert (clips.fps == SMALL.fps).all() and (clips.pixel_size_um == SMALL.pixel_size_um).all()
    # Every expert votes on every clip, with a letter grade.
    assert len(tables["ratings"]) == SMALL.n_clips * SMALL.n_experts
    assert set(tables["ratings"].grade) <= set(GRADES)
    assert set(tables["ratings"].rater_id) == set(tables["truth_experts"].rater_id)
    panel = json.loads((small_dataset / "truth_panel.json").read_text())
    assert panel["thresholds"] == [-1.5, -0.5, 0.5, 1.5]
    assert panel["config"]["n_clips"] == SMALL.n_clips


def test_every_video_decodes_to_the_configured_frames_and_size(small_dataset: Path) -> None:
    clips = load_truth(small_dataset)["clips"]
    for video in clips.video.unique():
        frames = _video_frames(small_dataset / video)
        assert len(frames) == SMALL.n_frames
        assert all(f.shape == (SMALL.height, SMALL.width) for f in frames)


def test_clips_start_where_their_true_track_starts_and_stay_inside(small_dataset: Path) -> None:
    tables = load_truth(small_dataset)
    tracks = tables["truth_tracks"]
    first = tracks[tracks.frame == 0].set_index("clip_id")
    clips = tables["clips"].set_index("clip_id")
    assert np.allclose(clips[["x", "y"]], first.loc[clips.index, ["x", "y"]])
    assert tracks.groupby("clip_id").size().eq(SMALL.n_frames).all()
    margin = SMALL.target_margin_um / SMALL.pixel_size_um
    assert tracks.x.between(margin - 1e-3, SMALL.width - 1 - margin + 1e-3).all()
    assert tracks.y.between(margin - 1e-3, SMALL.height - 1 - margin + 1e-3).all()


def test_the_head_is_drawn_where_the_true_track_says(clean_dataset: Path) -> None:
    tables = load_truth(clean_dataset)
    truth = tables["truth_clips"].set_index("clip_id")
    errors, plain = [], []
    for clip in tables["clips"].itertuples():
        track = tables["truth_tracks"].query("clip_id == @clip.clip_id")[["x", "y"]].to_numpy()
        # Vacuoles and amorphous outlines pull the measured centre off the outline's centroid.
        is_plain = truth.n_vacuoles[clip.clip_id] == 0 and truth.head_shape[clip.clip_id] != (
            "amorphous"
        )
        for frame, image in enumerate(_video_frames(clean_dataset / clip.video)):
            error = np.linalg.norm(_head_position(image, track[frame]) - track[frame])
            errors.append(error)
            if is_plain:
                plain.append(error)
    assert len(plain) > 100
    assert max(plain) < 1.0 and np.median(plain) < 0.3
    assert np.quantile(errors, 0.99) < 1.5 and max(errors) < 2.0


def test_a_moving_cell_is_drawn_with_smooth_subpixel_motion() -> None:
    """Positions of an isolated head, measured in the pixels, follow the truth to a fraction
    of a pixel: no jumps from rounding to whole pixels."""
    config = replace(SMALL, n_distractors=0, n_debris=0, noise_sd=0.0, n_frames=12)
    rendered = render_target_frames(motility=0.5, morphology=0.9, config=config, seed=2)
    measured = np.array(
        [_head_position(f, p) for f, p in zip(rendered.frames, rendered.track, strict=True)]
    )
    # The head's own shape offsets the measurement a little; its change between frames is
    # what must follow the truth.
    offsets = measured - rendered.track
    assert np.abs(offsets - offsets.mean(axis=0)).max() < 0.35


def test_a_normal_head_is_about_nine_by_six_pixels() -> None:
    config = replace(SMALL, n_distractors=0, n_debris=0, noise_sd=0.0, blur=0.0, n_frames=1)
    rendered = render_target_frames(motility=0.05, morphology=0.95, config=config, seed=1)
    assert rendered.cell.head_shape == "normal" and rendered.cell.n_vacuoles == 0
    frame = rendered.frames[0].astype(float)
    depth = np.median(frame) - frame  # the head is dark
    centre = rendered.track[0]
    angle = rendered.scene.tracks[0].angles[0]
    axis = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-axis[1], axis[0]])

    def extent(direction: np.ndarray) -> float:
        """Distance from the centre to the head's rim, px: where the dark head meets the
        bright halo (depth about halfway between the two)."""
        steps = np.arange(0, 10, 0.05)
        points = centre + steps[:, None] * direction
        profile = map_coordinates(depth, [points[:, 1], points[:, 0]], order=1)
        return float(steps[np.argmax(profile < 0.1 * profile[0])])

    # Forwards and sideways only: the midpiece leaves the head backwards.
    length = 2 * extent(axis)
    width = extent(across) + extent(-across)
    assert 8.0 < length < 10.5 and 5.0 < width < 7.0


def test_motility_shows_in_speed_and_straightness() -> None:
    config = SMALL
    rng = np.random.default_rng(0)
    far = Bounds(-1e6, 1e6, -1e6, 1e6)
    stats = {}
    for motility in (0.05, 0.3, 0.47, 0.6, 0.95):
        vcl, vsl = [], []
        for _ in range(8):
            cell = cell_sample(motility=motility, morphology=0.8, config=config, rng=rng)
            track = cell_track_sample(
                cell, start=(0.0, 0.0), heading=0.0, n_frames=16, fps=config.fps,
                px_per_um=config.px_per_um, bounds=far, drift=np.zeros((16, 2)), rng=rng,
            )  # fmt: skip
            seconds = 15 / config.fps
            steps = np.linalg.norm(np.diff(track.centres, axis=0), axis=1).sum()
            vcl.append(steps * config.pixel_size_um / seconds)
            span = np.linalg.norm(track.centres[-1] - track.centres[0])
            vsl.append(span * config.pixel_size_um / seconds)
        stats[motility] = (float(np.mean(vcl)), float(np.mean(vsl)), cell.motion_type)
    assert [stats[m][2] for m in stats] == [
        "immotile", "non_progressive", "sluggish", "progressive", "progressive"
    ]  # fmt: skip
    assert stats[0.05][0] < 5  # Brownian jitter only
    assert stats[0.3][1] < 0.6 * stats[0.3][0]  # circling: little net progress
    assert stats[0.3][1] < 0.3 * stats[0.6][1]
    assert stats[0.47][0] < stats[0.6][0] < stats[0.95][0]
    assert stats[0.6][0] > 50 and stats[0.95][0] < 170  # progressive VCL, µm/s


def test_low_morphology_gives_abnormal_heads_with_vacuoles() -> None:
    rng = np.random.default_rng(1)
    good = [cell_sample(motility=0.8, morphology=0.9, config=SMALL, rng=rng) for _ in range(20)]
    poor = [cell_sample(motility=0.8, morphology=0.1, config=SMALL, rng=rng) for _ in range(20)]
    assert {c.head_shape for c in good} == {"normal"} and sum(c.n_vacuoles for c in good) == 0
    assert {c.head_shape for c in poor} == {"amorphous"}
    assert np.mean([c.n_vacuoles for c in poor]) >= 1.5


def test_expected_distributions_sum_to_one_and_votes_follow_them() -> None:
    labels = sample_labels(config=SyntheticConfig(n_clips=400, n_experts=40, seed=7))
    expected = labels.truth_clips.set_index("clip_id")[list(PROB_COLUMNS)]
    assert np.allclose(expected.sum(axis=1), 1.0, atol=1e-5)
    counts = (
        pd.crosstab(labels.ratings.clip_id, labels.ratings.grade)
        .reindex(columns=list(GRADES), fill_value=0)
        .loc[expected.index]
    )
    # Pooled over clips, the votes per grade match the expectation (chi-square, 4 dof).
    observed_total = counts.sum().to_numpy()
    expected_total = expected.sum().to_numpy() * 40
    chi_square = ((observed_total - expected_total) ** 2 / expected_total).sum()
    assert chi_square < 18.5  # p < 0.001 under the model
    # Clip by clip, the vote distribution overlaps the expected one (histogram intersection).
    intersection = np.minimum(counts.to_numpy() / 40, expected.to_numpy()).sum(axis=1)
    assert intersection.mean() > 0.85


def test_most_grade_modes_are_b_or_c_and_every_grade_is_a_mode() -> None:
    labels = sample_labels(config=SyntheticConfig(n_clips=400, seed=11))
    modes = labels.truth_clips[list(PROB_COLUMNS)].to_numpy().argmax(axis=1)
    share = np.bincount(modes, minlength=5) / len(modes)
    assert share[1] + share[2] > 0.6
    assert (share > 0).all()
    assert share[0] < share[1] and share[4] < share[2]


def test_several_targets_in_one_video_start_apart(tmp_path: Path) -> None:
    config = replace(SMALL, n_clips=5, targets_per_video=3)
    clips = load_truth(generate_dataset(tmp_path, config))["clips"]
    assert clips.video.tolist() == ["videos/v0001.mp4"] * 3 + ["videos/v0002.mp4"] * 2
    assert clips.patient_id.nunique() == 2
    for _, group in clips.groupby("video"):
        starts = group[["x", "y"]].to_numpy()
        gaps = np.linalg.norm(starts[:, None] - starts[None], axis=-1)
        separation = config.min_separation_um / config.pixel_size_um
        assert gaps[np.triu_indices(len(starts), 1)].min() >= separation


def test_several_videos_per_patient_share_a_patient_id_and_votes_can_be_subsets(
    tmp_path: Path,
) -> None:
    config = replace(
        SMALL, n_clips=5, videos_per_patient=2, votes_per_clip=4, n_frames=4, video_format="avi"
    )
    tables = load_truth(generate_dataset(tmp_path, config))
    clips = tables["clips"]
    assert clips.patient_id.tolist() == ["P0001", "P0001", "P0002", "P0002", "P0003"]
    assert clips.video.str.endswith(".avi").all() and clips.video.nunique() == 5
    assert len(_video_frames(tmp_path / clips.video[0])) == 4
    per_clip = tables["ratings"].groupby("clip_id").rater_id
    assert per_clip.nunique().eq(4).all() and per_clip.size().eq(4).all()


def test_the_command_line_writes_a_dataset(tmp_path: Path) -> None:
    main([str(tmp_path), "--clips", "2", "--seed", "4", "--width", "160", "--height", "120",
          "--frames", "3", "--experts", "5"])  # fmt: skip
    tables = load_truth(tmp_path)
    assert len(tables["clips"]) == 2 and len(tables["ratings"]) == 10
    assert len(_video_frames(tmp_path / tables["clips"].video[0])) == 3


def test_an_impossible_config_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="votes_per_clip"):
        SyntheticConfig(n_experts=5, votes_per_clip=6)
    with pytest.raises(ValueError, match="larger frame"):
        SyntheticConfig(width=20, height=20)


def _staged(mode: str, seed: int = 0, motility: float = 0.9, **changes: object) -> object:
    config = replace(SMALL, n_frames=16, failure_mode=mode, **changes)  # type: ignore[arg-type]
    return render_target_frames(motility=motility, morphology=0.8, config=config, seed=seed)


def test_the_default_scene_is_what_it_was_and_its_config_record_has_no_new_knob(
    tmp_path: Path,
) -> None:
    plain = render_target_frames(motility=0.7, morphology=0.8, config=SMALL, seed=2)
    named = render_target_frames(
        motility=0.7, morphology=0.8, config=replace(SMALL, failure_mode="none"), seed=2
    )
    assert np.array_equal(plain.frames, named.frames)
    generate_dataset(tmp_path, replace(SMALL, n_clips=1, n_frames=2))
    assert "failure_mode" not in json.loads((tmp_path / "truth_panel.json").read_text())["config"]


@pytest.mark.parametrize("seed", range(4))
def test_a_target_staged_to_leave_the_frame_swims_out_of_it(seed: int) -> None:
    rendered = _staged("leaves_frame", seed)
    x, y = rendered.track[:, 0], rendered.track[:, 1]  # type: ignore[attr-defined]
    outside = (x < 0) | (x > SMALL.width - 1) | (y < 0) | (y > SMALL.height - 1)
    assert not outside[0] and outside[-1]


def test_a_static_cluster_lies_beside_the_target_s_path_half_way() -> None:
    rendered = _staged("static_cluster", motility=0.5)
    scene = rendered.scene  # type: ignore[attr-defined]
    plain = _staged("none", motility=0.5).scene  # type: ignore[attr-defined]
    added = scene.tracks[len(plain.tracks) :]
    assert 3 <= len(added) <= 5 and len(scene.debris) == len(plain.debris) + 2
    middle = rendered.track[SMALL.n_frames // 2]  # type: ignore[attr-defined]
    head_px = SMALL.head_length_um / SMALL.pixel_size_um
    for track in added:
        assert np.linalg.norm(track.centres[0] - middle) < 3 * head_px  # beside the path
        assert np.ptp(track.centres, axis=0).max() < head_px  # still (drift and jitter only)


def test_a_bright_neighbour_is_a_still_copy_of_the_target_s_head_close_by() -> None:
    rendered = _staged("bright_neighbour", motility=0.8)
    scene = rendered.scene  # type: ignore[attr-defined]
    target, neighbour = scene.cells[0], scene.cells[-1]
    assert neighbour.motion_type == "immotile" and neighbour.speed_um_s == 0
    assert np.array_equal(neighbour.head_outline_um, target.head_outline_um)
    assert neighbour.contrast >= 1.3 * target.contrast
    gap = np.linalg.norm(scene.tracks[-1].centres[0] - scene.tracks[0].centres[0])
    head_px = SMALL.head_length_um / SMALL.pixel_size_um
    assert 1.4 * head_px < gap < 2.6 * head_px


def _core_extent(pixel_size_um: float) -> int:
    """The longest side (px) of the darkest part of a still head drawn at this scale."""
    config = replace(
        SMALL,
        pixel_size_um=pixel_size_um,
        width=round(160 / pixel_size_um),
        height=round(120 / pixel_size_um),
        n_frames=2,
        n_distractors=0,
        n_debris=0,
        noise_sd=0.0,
    )
    rendered = render_target_frames(motility=0.05, morphology=0.9, config=config, seed=1)
    frame = rendered.frames[0].astype(np.float32)
    rows, columns = np.nonzero(frame < np.median(frame) - 75)  # the core, not the midpiece
    return int(max(np.ptp(rows), np.ptp(columns)) + 1)


def test_the_three_magnifications_draw_heads_of_growing_size() -> None:
    extents = [_core_extent(p) for p in MAGNIFICATIONS_UM_PER_PX]
    assert MAGNIFICATIONS_UM_PER_PX == (0.5, 0.25, 0.125)
    assert extents[0] < extents[1] < extents[2]
    # Twice the px per µm, twice the head (the smallest is too blurred to compare).
    assert extents[2] / extents[1] == pytest.approx(2, rel=0.25)


def test_every_head_at_frame_0_is_known_targets_first(tmp_path: Path) -> None:
    config = replace(SMALL, n_clips=4, targets_per_video=2, n_frames=2)
    heads = heads_frame0(config)
    clips = load_truth(generate_dataset(tmp_path, config))["clips"]
    assert list(heads.columns) == ["video", "x", "y", "target"]
    for video, group in heads.groupby("video"):
        targets = group[group.target][["x", "y"]].to_numpy()
        tagged = clips[clips.video == video][["x", "y"]].to_numpy()
        np.testing.assert_allclose(targets, tagged, atol=1e-3)
        assert (~group.target).sum() >= 1  # distractors are heads too
        assert group.x.between(0, config.width - 1).all()
        assert group.y.between(0, config.height - 1).all()


def test_the_command_line_stages_a_failure_mode_at_a_magnification(tmp_path: Path) -> None:
    main([str(tmp_path), "--clips", "1", "--width", "320", "--height", "240", "--frames", "2",
          "--experts", "3", "--pixel-size", "0.25",
          "--failure-mode", "bright_neighbour"])  # fmt: skip
    record = json.loads((tmp_path / "truth_panel.json").read_text())["config"]
    assert record["failure_mode"] == "bright_neighbour" and record["pixel_size_um"] == 0.25
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--failure-mode", "teleport"])
