"""process_video end to end on small synthetic videos, and the files it writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from annotation.ingest.kinematics import kinematics
from annotation.ingest.pipeline import IngestConfig, process_video
from annotation.ingest.tracking import CROP_FILL
from annotation.ingest.video_io import (
    H264Output,
    H264Writer,
    IngestError,
    encode_h264_mp4,
    encode_h264_mp4s,
    probe_video,
    read_frames_gray,
    video_frames_luma,
    write_filmstrip_png,
)
from tests.annotation.ingest.videos import head_path, render_frames

WIDTH, HEIGHT = 200, 160
START = (60.3, 70.6)
# Small crops keep the tests fast; the paper's 150 px is tested once below.
CONFIG = IngestConfig(crop_size=48)


def _write_video(path: Path, kind: str = "straight", n_frames: int = 18, **kwargs: object) -> Path:
    frames = render_frames(
        head_path(kind, n_frames, start=START), width=WIDTH, height=HEIGHT, **kwargs
    )
    encode_h264_mp4(frames, path, fps=15)
    return path


def _write_avi(path: Path, frames: np.ndarray) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, frames.shape[2:0:-1])
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return _write_video(tmp_path / "straight.mp4")


def _leftovers(out_dir: Path) -> list[str]:
    """What a failed run left: ``out_dir`` itself or staging folders beside it."""
    return sorted(
        p.name for p in out_dir.parent.iterdir() if p.name.startswith((".", out_dir.name))
    )


def test_a_video_gives_one_clip_per_target_with_its_files(video: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "media" / "v1"
    truth = head_path("straight", 16, start=START)
    output = process_video(video, [START], out_dir=out_dir, pixel_size_um=0.5, config=CONFIG)

    assert (output.info.width, output.info.height, output.info.fps) == (WIDTH, HEIGHT, 15.0)
    assert output.info.frame_count == 18
    [clip] = output.clips
    assert clip.track.shape == (16, 2)
    # The H.264 round trip blurs the head a little; the track stays within a pixel.
    assert np.linalg.norm(clip.track - truth, axis=1).max() < 1.0
    assert len(clip.match_scores) == 16 and min(clip.match_scores) > 0.6
    expected = kinematics(truth, fps=15, pixel_size_um=0.5)
    assert clip.kinematics.vsl == pytest.approx(expected.vsl, rel=0.05)
    assert clip.kinematics.speed == clip.kinematics.vcl

    crops = np.load(clip.frames_npy)
    assert crops.shape == (16, 48, 48) and crops.dtype == np.uint8
    # The dark head core is at the centre of every crop.
    assert (crops[:, 23:26, 23:26].min(axis=(1, 2)) < 90).all()  # background is 120
    assert np.array_equal(
        cv2.imread(str(clip.filmstrip_png), cv2.IMREAD_UNCHANGED), crops.reshape(-1, 48)
    )
    assert read_frames_gray(clip.crop_mp4, 16).shape == (16, 48, 48)
    assert probe_video(output.preview_mp4).frame_count == 16
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "clip_0.mp4",
        "clip_0.npy",
        "clip_0.png",
        "preview.mp4",
    ]
    assert _leftovers(out_dir) == ["v1"]
    assert len(output.sha256) == 64
    assert set(output.stage_seconds) == {"decode", "track", "hash", "encode"}


def test_the_paper_s_150_px_crops_of_a_small_frame_are_padded_with_black_past_its_edge(
    video: Path, tmp_path: Path
) -> None:
    output = process_video(video, [START], out_dir=tmp_path / "out", pixel_size_um=0.5)
    clip = output.clips[0]
    crops = np.load(clip.frames_npy)
    assert crops.shape == (16, 150, 150)
    assert round(clip.track[0][0]) - 75 < 0  # frame 0: the box reaches past the left edge
    for crop, (x, y) in zip(crops, clip.track, strict=True):
        left, top = round(x) - 75, round(y) - 75
        inside = np.zeros((150, 150), dtype=bool)
        inside[max(0, -top) : min(150, HEIGHT - top), max(0, -left) : min(150, WIDTH - left)] = 1
        # Past the edge: the constant fill, after the stretch to full range too.
        assert (crop[~inside] == CROP_FILL).all()
        # Inside: the video's background (about 120), not black; the head still at the centre.
        assert np.median(crop[inside]) > 80
        assert crop[73:78, 73:78].min() < 90
    # What the page steps through shows the same padding.
    strip = cv2.imread(str(clip.filmstrip_png), cv2.IMREAD_UNCHANGED)
    assert (strip[:150, 0] == CROP_FILL).all()


def test_several_targets_get_numbered_clips(tmp_path: Path) -> None:
    frames = render_frames(head_path("circle", 16, start=START), width=WIDTH, height=HEIGHT)
    # A second head: the same frames shifted right by 90 px.
    frames = np.minimum(frames, np.roll(frames, 90, axis=2))
    path = _write_avi(tmp_path / "two.avi", frames)
    second = (START[0] + 90, START[1])
    # 0.5 µm/px: the drawn heads are the size of human heads at that scale, which the
    # tracker's sizes follow (annotation.ingest.scale).
    output = process_video(
        path, [START, second], out_dir=tmp_path / "out", pixel_size_um=0.5, config=CONFIG
    )
    assert [c.frames_npy.name for c in output.clips] == ["clip_0.npy", "clip_1.npy"]
    np.testing.assert_allclose(
        output.clips[1].track - output.clips[0].track, [[90, 0]] * 16, atol=1.0
    )


def test_many_targets_and_an_odd_crop_size_give_playable_clips(video: Path, tmp_path: Path) -> None:
    # Five clips of 47 px (48 once even) under a 200 px preview: two rows in the encoder.
    config = IngestConfig(crop_size=47)
    output = process_video(
        video, [START] * 5, out_dir=tmp_path / "out", pixel_size_um=0.5, config=config
    )
    assert [c.crop_mp4.name for c in output.clips] == [f"clip_{i}.mp4" for i in range(5)]
    first = np.load(output.clips[0].frames_npy)
    assert first.shape == (16, 47, 47)
    for clip in output.clips:
        played = read_frames_gray(clip.crop_mp4, 16)
        assert played.shape == (16, 48, 48)
        # H.264 is lossy, but each file shows its own crop, not a neighbour's box.
        assert np.abs(played[:, :47, :47].astype(int) - first).mean() < 4


def test_a_wide_video_gets_a_preview_scaled_to_the_maximum_width(
    video: Path, tmp_path: Path
) -> None:
    config = IngestConfig(crop_size=48, preview_max_width=101)
    output = process_video(
        video, [START], out_dir=tmp_path / "out", pixel_size_um=0.5, config=config
    )
    info = probe_video(output.preview_mp4)
    assert (info.width, info.height) == (100, 80)


def test_a_given_frame_rate_overrides_the_file_s(video: Path, tmp_path: Path) -> None:
    at_15 = process_video(video, [START], out_dir=tmp_path / "a", pixel_size_um=0.5, config=CONFIG)
    at_30 = process_video(
        video, [START], out_dir=tmp_path / "b", pixel_size_um=0.5, config=CONFIG, fps=30
    )
    assert at_30.clips[0].kinematics.vcl == pytest.approx(2 * at_15.clips[0].kinematics.vcl)


def test_a_second_run_replaces_the_first_run_s_folder(video: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "stale.txt").write_text("from an earlier run")
    process_video(video, [START], out_dir=out_dir, pixel_size_um=0.5, config=CONFIG)
    assert not (out_dir / "stale.txt").exists()
    assert _leftovers(out_dir) == ["out"]


def test_the_same_frames_encode_to_the_same_bytes(tmp_path: Path) -> None:
    frames = render_frames(head_path("zigzag", 8, start=(20.0, 20.0)), width=61, height=45)
    encode_h264_mp4(frames, tmp_path / "a.mp4", fps=15)
    encode_h264_mp4(frames, tmp_path / "b.mp4", fps=15)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    # Odd sizes are padded to even ones, as yuv420p needs.
    info = probe_video(tmp_path / "a.mp4")
    assert (info.width, info.height, info.frame_count) == (62, 46, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]


def test_colour_frames_encode_too(tmp_path: Path) -> None:
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    frames[..., 2] = 200  # red in BGR
    encode_h264_mp4(frames, tmp_path / "red.mp4", fps=15)
    assert probe_video(tmp_path / "red.mp4").frame_count == 4


def test_the_filmstrip_stacks_the_frames_top_to_bottom(tmp_path: Path) -> None:
    frames = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    write_filmstrip_png(frames, tmp_path / "strip.png")
    strip = cv2.imread(str(tmp_path / "strip.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(strip[4:8], frames[1])


def test_an_encoder_failure_raises_and_leaves_no_file(tmp_path: Path) -> None:
    frames = np.zeros((2, 16, 16), dtype=np.uint8)
    output = H264Output(tmp_path / "bad.mp4", (0, 0, 16, 16), preset="no-such-preset")
    with pytest.raises(RuntimeError, match=r"ffmpeg could not encode bad\.mp4"):
        encode_h264_mp4s(frames, [output], fps=15)
    assert list(tmp_path.iterdir()) == []


def test_a_writer_refuses_a_frame_of_another_size(tmp_path: Path) -> None:
    output = H264Output(tmp_path / "a.mp4", (0, 0, 16, 16))
    with (
        pytest.raises(ValueError, match="not the writer's"),
        H264Writer([output], width=16, height=16, fps=15) as writer,
    ):
        writer.write(np.zeros((16, 18), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def _random_bytes(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return path


def _html(path: Path) -> Path:
    path.write_text("<!doctype html><html><body>Not a video</body></html>\n")
    return path


def _zero_frames(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48))
    writer.release()
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("random.mp4", _random_bytes, "not a readable video"),
        ("page.mp4", _html, "not a readable video"),
        ("empty.avi", _zero_frames, "the video has no frames"),
        (
            "short.mp4",
            lambda p: _write_video(p, n_frames=12),
            "the video has 12 frames but 16 are needed",
        ),
        ("gone.mp4", lambda p: p, "there is no file at"),
    ],
)
def test_a_file_that_is_no_usable_video_is_refused_and_leaves_nothing(
    tmp_path: Path, name: str, make: object, message: str
) -> None:
    path = make(tmp_path / name)  # type: ignore[operator]
    out_dir = tmp_path / "out"
    with pytest.raises(IngestError, match=message):
        process_video(path, [START], out_dir=out_dir, pixel_size_um=0.5, config=CONFIG)
    assert _leftovers(out_dir) == []


def test_a_target_outside_the_frame_is_refused_naming_point_and_frame(
    video: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    with pytest.raises(
        IngestError, match=r"target point \(2000, 10\) lies outside the 200x160 frame"
    ):
        process_video(video, [START, (2000, 10)], out_dir=out_dir, pixel_size_um=0.5, config=CONFIG)
    assert _leftovers(out_dir) == []


def test_a_target_lost_before_the_shortest_clip_is_refused_naming_the_frame(
    tmp_path: Path,
) -> None:
    path = _write_video(tmp_path / "vanish.mp4", visible=np.arange(18) < 5)
    out_dir = tmp_path / "out"
    with pytest.raises(IngestError, match=r"was lost at frame 5 \(match score 0\.\d\d\)"):
        process_video(path, [START], out_dir=out_dir, pixel_size_um=0.5, config=CONFIG)
    assert _leftovers(out_dir) == []


def test_a_target_lost_near_the_end_keeps_a_shorter_clip_of_the_frames_before(
    tmp_path: Path,
) -> None:
    path = _write_video(tmp_path / "vanish.mp4", visible=np.arange(18) < 11)
    output = process_video(
        path, [START], out_dir=tmp_path / "out", pixel_size_um=0.5, config=CONFIG
    )
    (clip,) = output.clips
    assert output.lost == [] and clip.n_frames == 11
    assert clip.cut_short is not None and clip.cut_short.lost_at == 11
    assert "lost at frame 11" in clip.cut_short.message
    assert "keeps the 11 frames before" in clip.cut_short.message
    assert np.load(clip.frames_npy).shape == (11, 48, 48)
    assert probe_video(clip.crop_mp4).frame_count == 11
    assert cv2.imread(str(clip.filmstrip_png), cv2.IMREAD_GRAYSCALE).shape == (11 * 48, 48)
    # The preview still shows the whole first second.
    assert probe_video(output.preview_mp4).frame_count == 16


def test_a_target_lost_early_gets_its_reason_and_no_files_while_the_other_keeps_its_clip(
    tmp_path: Path,
) -> None:
    # A second head that vanishes at frame 4, far from the first one.
    first = head_path("straight", 18, start=START)
    second = head_path("straight", 18, start=(120.2, 40.4))
    one = render_frames(first, width=WIDTH, height=HEIGHT).astype(np.int16)
    other = render_frames(second, width=WIDTH, height=HEIGHT, visible=np.arange(18) < 4, seed=1)
    frames = np.clip(one + other - 120, 0, 255).astype(np.uint8)
    path = _write_avi(tmp_path / "two.avi", frames)
    out_dir = tmp_path / "out"
    output = process_video(
        path, [START, (120.2, 40.4)], out_dir=out_dir, pixel_size_um=0.5, config=CONFIG
    )
    (clip,) = output.clips
    (lost,) = output.lost
    assert clip.target == 0 and clip.n_frames == 16 and clip.cut_short is None
    assert lost.target == 1 and lost.lost_at == 4 and "move the target" in lost.message
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "clip_0.mp4", "clip_0.npy", "clip_0.png", "preview.mp4",
    ]  # fmt: skip


def test_a_click_on_empty_background_is_refused(tmp_path: Path) -> None:
    path = _write_avi(tmp_path / "flat.avi", np.full((16, 48, 64), 120, dtype=np.uint8))
    with pytest.raises(IngestError, match=r"no sperm head to follow at \(30, 20\)"):
        process_video(path, [(30, 20)], out_dir=tmp_path / "out", pixel_size_um=0.5, config=CONFIG)


def test_a_failed_run_leaves_an_earlier_run_s_folder_alone(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "preview.mp4").write_bytes(b"earlier")
    with pytest.raises(IngestError):
        process_video(_html(tmp_path / "page.mp4"), [START], out_dir=out_dir, pixel_size_um=0.5)
    assert (out_dir / "preview.mp4").read_bytes() == b"earlier"


@pytest.mark.parametrize("pixel_size_um", [0.0, -1.0, float("nan")])
def test_a_pixel_size_that_is_not_positive_is_refused(
    video: Path, tmp_path: Path, pixel_size_um: float
) -> None:
    with pytest.raises(IngestError, match="pixel size"):
        process_video(video, [START], out_dir=tmp_path / "out", pixel_size_um=pixel_size_um)


@pytest.mark.parametrize(("name", "limited"), [("flat.mp4", True), ("flat.avi", False)])
def test_grey_levels_survive_the_round_trip_in_either_range(
    tmp_path: Path, name: str, limited: bool
) -> None:
    # H.264 stores limited-range luma (16-235), MJPEG full-range: read back, both are the grey
    # that was written, within the codecs' rounding.
    frames = np.tile(np.array([10, 60, 120, 200, 245], dtype=np.uint8).repeat(16), (4, 32, 1))
    path = tmp_path / name
    if limited:
        encode_h264_mp4(frames, path, fps=15)
    else:
        _write_avi(path, frames)
    with video_frames_luma(path, 4) as (_, decoded, is_limited):
        assert is_limited is limited
        first = next(decoded).copy()
    grey = read_frames_gray(path, 4)
    assert np.abs(grey[:, 8:24, 4::16].astype(int) - frames[:, 8:24, 4::16]).max() <= 3
    if limited:  # the stored luma itself is squeezed into 16-235: dark lighter, bright darker
        assert first.min() >= 16 and first.max() <= 235
        assert first[16, 4] > grey[0, 16, 4] and first[16, 68] < grey[0, 16, 68]


def test_a_file_in_another_container_is_refused_by_its_content(tmp_path: Path) -> None:
    # A PNG renamed .mp4: FFmpeg would read it as a one-frame video; we open MP4 and AVI only.
    ok, png = cv2.imencode(".png", np.zeros((48, 64), dtype=np.uint8))
    assert ok
    path = tmp_path / "still.mp4"
    path.write_bytes(png.tobytes())
    with pytest.raises(IngestError, match="neither an MP4 nor an AVI file"):
        probe_video(path)


def test_the_shortest_clip_kept_has_the_frames_every_backbone_samples_and_no_fewer() -> None:
    from annotation.ingest.pipeline import MIN_CLIP_FRAMES
    from modeling.ml.backbones import PRESETS

    sampled = {
        preset.inputs.frames
        for presets in PRESETS.values()
        for preset in presets.values()
        if preset.inputs.frames is not None
    }
    assert sampled and max(sampled) == MIN_CLIP_FRAMES
    assert IngestConfig().min_frames == MIN_CLIP_FRAMES <= IngestConfig().n_frames
