"""Decoding in a child process: a file that crashes or hangs the decoder fails its video with
a clear message; the worker lives on. Includes a small fuzz batch through a real worker."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotation.ingest import isolation, services
from annotation.ingest.isolation import DecodeLimits, probe_video_isolated, process_video_isolated
from annotation.ingest.video_io import IngestError, encode_h264_mp4
from annotation.models import Video
from tests.conftest import wait_for
from tests.robustness.mutants import mutants


def _first_clip(synthetic_small: Path) -> tuple[Path, tuple[float, float]]:
    row = pd.read_csv(synthetic_small / "clips.csv").iloc[0]
    return synthetic_small / row.video, (float(row.x), float(row.y))


def _fake_decoder(tmp_path: Path, monkeypatch, script: str) -> None:
    """Stand in for the decoding child with a program that dies the way a decoder can."""
    program = tmp_path / "decoder"
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    monkeypatch.setattr(isolation.sys, "executable", str(program))


def test_the_isolated_pipeline_gives_what_the_pipeline_gives(
    synthetic_small: Path, tmp_path: Path
) -> None:
    from annotation.ingest.pipeline import process_video

    video, target = _first_clip(synthetic_small)
    direct = process_video(video, [target], out_dir=tmp_path / "a", pixel_size_um=0.5)
    isolated = process_video_isolated(video, [target], out_dir=tmp_path / "b", pixel_size_um=0.5)
    assert isolated.info == direct.info and isolated.sha256 == direct.sha256
    assert isolated.clips[0].kinematics == direct.clips[0].kinematics
    assert (isolated.clips[0].track == direct.clips[0].track).all()
    assert isolated.clips[0].frames_npy == tmp_path / "b" / "clip_0.npy"
    assert isolated.clips[0].frames_npy.read_bytes() == direct.clips[0].frames_npy.read_bytes()


def test_a_decoder_crash_becomes_a_clear_error_and_leaves_nothing(
    synthetic_small: Path, tmp_path: Path, monkeypatch
) -> None:
    video, target = _first_clip(synthetic_small)
    out_dir = tmp_path / "clips" / "v1"
    out_dir.parent.mkdir()
    (out_dir.parent / ".v1.abc.staging").mkdir()  # what a killed pipeline leaves behind
    _fake_decoder(tmp_path, monkeypatch, "kill -SEGV $$")
    with pytest.raises(IngestError, match=r"the decoder crashed \(signal 11\) while reading"):
        process_video_isolated(video, [target], out_dir=out_dir, pixel_size_um=0.5)
    assert list(out_dir.parent.iterdir()) == []


def test_a_decoder_that_runs_out_of_cpu_time_is_reported_as_such(
    synthetic_small: Path, tmp_path: Path, monkeypatch
) -> None:
    _fake_decoder(tmp_path, monkeypatch, "kill -XCPU $$")
    with pytest.raises(IngestError, match="more than 120 s of CPU time"):
        probe_video_isolated(_first_clip(synthetic_small)[0])


def test_a_decode_server_that_never_starts_is_given_up(
    synthetic_small: Path, tmp_path: Path, monkeypatch
) -> None:
    _fake_decoder(tmp_path, monkeypatch, "sleep 30 & sleep 30")
    monkeypatch.setattr(isolation, "SERVER_START_S", 1.0)
    with pytest.raises(IngestError, match=r"the decoding process did not start in 1\.0 s"):
        probe_video_isolated(_first_clip(synthetic_small)[0])


def test_a_decoder_out_of_memory_fails_the_file_not_the_caller(tmp_path: Path) -> None:
    # A 1600 x 1200 frame needs fresh buffers; 150 MB of address space is less than the decode
    # server's child already maps, so decoding it fails for want of memory. (FFmpeg reports
    # that as a frame it could not decode, or Python as a MemoryError: either fails the file.)
    big = tmp_path / "big.mp4"
    noise = np.random.default_rng(0).integers(0, 256, (3, 1200, 1600), dtype=np.uint8)
    encode_h264_mp4(noise, big, fps=15)
    with pytest.raises(IngestError, match=r"be decoded|needed more than 150 MB"):
        probe_video_isolated(big, limits=DecodeLimits(mem_mb=150))
    # The server lives on: the next child decodes the same file under the usual limits.
    assert probe_video_isolated(big).width == 1600


def test_each_thread_has_its_own_decode_server_which_outlives_a_killed_child(
    synthetic_small: Path,
) -> None:
    video = _first_clip(synthetic_small)[0]
    probe_video_isolated(video)
    server = isolation._server()
    # A wall-time limit no decoding can meet: the child is killed, the server stays.
    with pytest.raises(IngestError, match=r"decoding took longer than 0\.001 s"):
        probe_video_isolated(video, limits=DecodeLimits(wall_s=0.001))
    assert isolation._server() is server and server.usable()
    assert probe_video_isolated(video).frame_count == 20

    # Another thread starts its own server; stopping ours stops the process.
    # A server that dies between requests is replaced by the next one.
    server.process.kill()
    server.process.wait()
    assert probe_video_isolated(video).frame_count == 20
    replacement = isolation._server()
    assert replacement is not server and not server.usable()
    server = replacement

    def in_another_thread() -> isolation._DecodeServer:
        probe_video_isolated(video)
        theirs = isolation._server()
        isolation.stop_decode_server()
        return theirs

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(in_another_thread).result() is not server
    assert isolation.stop_decode_server() > 0  # the CPU time its children used
    assert server.process.poll() is not None


def test_the_child_writes_only_its_scratch_folder_which_becomes_the_out_dir(
    synthetic_small: Path, tmp_path: Path
) -> None:
    video, target = _first_clip(synthetic_small)
    out_dir = tmp_path / "clips" / "v1"
    out_dir.mkdir(parents=True)
    (out_dir / "from-an-earlier-run").write_text("x")
    output = process_video_isolated(video, [target], out_dir=out_dir, pixel_size_um=0.5)
    assert [p.name for p in out_dir.parent.iterdir()] == ["v1"]  # no scratch folder left
    assert output.preview_mp4 == out_dir / "preview.mp4" and output.preview_mp4.is_file()
    assert not (out_dir / "from-an-earlier-run").exists()

    # A file larger than the limit stops the child (RLIMIT_FSIZE), and out_dir stays.
    with pytest.raises(IngestError, match="wrote a file over 0 MB"):
        process_video_isolated(
            video, [target], out_dir=out_dir, pixel_size_um=0.5, limits=DecodeLimits(file_mb=0)
        )
    assert [p.name for p in out_dir.parent.iterdir()] == ["v1"]
    assert output.clips[0].frames_npy.is_file()


@pytest.mark.parametrize("codec", ["ffv1", "png"])
def test_a_video_in_a_codec_microscopes_do_not_write_is_refused_before_decoding(
    tmp_path: Path, codec: str
) -> None:
    import av

    path = tmp_path / f"{codec}.avi"
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream(codec, rate=15)
        stream.width, stream.height = 32, 24
        stream.pix_fmt = "gray" if codec == "ffv1" else "rgb24"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((24, 32), np.uint8), format="gray")
            for packet in stream.encode(frame.reformat(format=stream.pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(IngestError, match=rf"codec \({codec}\) is not one we decode"):
        probe_video_isolated(path)


def test_an_answer_naming_files_outside_the_out_dir_is_refused(tmp_path: Path) -> None:
    answer = {
        "info": {"fps": 15.0, "width": 4, "height": 4, "frame_count": 16},
        "sha256": "0" * 64,
        "preview_mp4": "/etc/passwd",
        "stage_seconds": {},
        "clips": [],
        "lost": [],
    }
    with pytest.raises(IngestError, match="outside its folder"):
        isolation._output_from_json(answer, tmp_path / "out", n_targets=1)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_fuzz_batch_through_the_worker_ends_ready_or_failed_and_the_worker_lives(
    celery_worker_process, synthetic_small: Path
) -> None:
    video, target = _first_clip(synthetic_small)
    batch = list(mutants([("mp4", video.read_bytes())], count=20, seed=7))
    ids, refused = [], 0
    for name, data in batch:
        try:
            video = services.video_create(
                fileobj=io.BytesIO(data),
                original_name=f"{name}.mp4",
                patient_code="P-fuzz",
                pixel_size_um=0.5,
                targets=[services.Target(*target)],
                uploaded_by=None,
            )
        except services.ServiceError as exc:  # a broken signature: refused at upload
            assert "not an MP4 or AVI video" in str(exc)
            refused += 1
        else:
            ids.append(video.pk)
    assert len(ids) + refused == 20 and ids
    wait_for(
        lambda: not Video.objects.filter(pk__in=ids, status__in=["pending", "processing"]).exists(),
        timeout=240,
        what="the worker to ingest every mutant",
    )
    videos = Video.objects.filter(pk__in=ids)
    assert {v.status for v in videos} <= {"ready", "failed"}
    assert all(v.error for v in videos if v.status == "failed")
    assert not [v.error for v in videos if "unexpected" in v.error]
    assert celery_worker_process.poll() is None, "the worker died"
