"""The decoding child holds nothing worth stealing: run through the decode server's own
launcher (the same environment, network namespace, fork, limits and confinement), a probe
child does what an exploited decoder would and is refused each time."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from annotation.ingest import isolation, sandbox
from annotation.ingest.isolation import DecodeLimits
from annotation.ingest.video_io import encode_h264_mp4

CANARY = "MERSV_SANDBOX_CANARY"


@pytest.fixture
def attack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What a probe child found when it tried every way out (tests/security/sandbox_probe.py)."""
    import numpy as np

    media = tmp_path / "media" / "videos"
    media.mkdir(parents=True)
    video = media / "upload.mp4"
    encode_h264_mp4(np.full((2, 16, 16), 128, np.uint8), video, fps=15)
    exports = tmp_path / "exports" / "v1"
    exports.mkdir(parents=True)
    (exports / "ratings.csv").write_text("clip_id,rater_id,grade\n")
    secret = tmp_path / "secret_key"
    secret.write_text("the-secret-key")
    secret.chmod(0o600)

    monkeypatch.setenv(CANARY, "worker-only-secret")
    launcher = tmp_path / "probe-server"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m tests.security.sandbox_probe "$@"\n')
    launcher.chmod(0o755)
    monkeypatch.setattr(isolation.sys, "executable", str(launcher))
    request = {
        "op": "attack",
        "path": str(video),
        "targets_to_try": {
            "port": 5432,  # the test database's PostgreSQL listens here
            "secret": str(secret),
            "parent_pid": os.getpid(),
            "export_dir": str(exports),
            "export_file": str(exports / "ratings.csv"),
        },
    }
    try:
        answer = isolation._run_child(request, DecodeLimits(), out_dir=None)
    finally:
        isolation.stop_decode_server()
    assert (exports / "ratings.csv").read_text() == "clip_id,rater_id,grade\n"
    assert not (exports / "planted.csv").exists() and not (media / "planted.mp4").exists()
    found: dict[str, Any] = answer["found"]
    return found


def test_the_decoding_child_sees_none_of_the_workers_environment(
    attack: dict[str, Any],
) -> None:
    environment = attack["environment"]
    assert os.environ.get("DATABASE_URL")  # the worker (this test) has it...
    assert CANARY not in environment and "DATABASE_URL" not in environment  # ...the child not
    assert "CELERY_BROKER_URL" not in environment and "DJANGO_SECRET_KEY" not in environment
    allowed = {"PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}
    allowed |= {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENCV_FFMPEG_THREADS"}
    allowed |= {"GLIBC_TUNABLES"}
    # Set inside the child: Python's C-locale coercion, OpenCV's loader, the probe's shell.
    allowed |= {"LC_CTYPE", "LD_LIBRARY_PATH", "PWD"}
    assert set(environment) <= allowed, sorted(set(environment) - allowed)
    # Nor can it read the worker's environment from /proc.
    assert attack["read_parent_environ"].startswith("refused"), attack["read_parent_environ"]


def test_the_decoding_child_cannot_open_a_network_socket(attack: dict[str, Any]) -> None:
    status = sandbox.sandbox_status()
    if not (status.network_namespace or status.socket_filter):
        pytest.skip(f"this machine cannot isolate the network: {status.missing()}")
    assert attack["tcp"].startswith("refused"), attack["tcp"]  # PostgreSQL on 127.0.0.1:5432
    if status.socket_filter:
        assert attack["unix_socket"].startswith("refused: PermissionError"), attack
    print(attack["tcp"], attack["unix_socket"])


def test_the_decoding_child_cannot_write_exports_or_media_nor_read_the_secret_key(
    attack: dict[str, Any],
) -> None:
    if not sandbox.landlock_abi():
        pytest.skip("this kernel has no Landlock: check --deploy warns (mersv.W101)")
    assert attack["read_video"] == "done" and attack["write_scratch"] == "done"
    for action in ("write_export", "change_export", "write_media", "read_secret"):
        assert attack[action].startswith("refused: PermissionError"), (action, attack[action])
    if sandbox.landlock_abi() >= 6:  # signals scoped to the sandbox
        assert attack["signal_parent"].startswith("refused"), attack["signal_parent"]


def _sandbox_warnings() -> dict[str, str]:
    from django.core.checks import run_checks

    found = run_checks(include_deployment_checks=True)
    return {m.id: m.msg for m in found if m.id and m.id.startswith("mersv.W10")}


def test_check_deploy_is_silent_where_every_layer_works() -> None:
    status = sandbox.sandbox_status()
    assert status.landlock_abi and (status.network_namespace or status.socket_filter), (
        f"this machine should isolate decoding: {status.missing()}"
    )
    assert _sandbox_warnings() == {}


def test_check_deploy_and_the_worker_say_which_layer_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bare = sandbox.SandboxStatus(network_namespace=False, socket_filter=False, landlock_abi=0)
    monkeypatch.setattr(sandbox, "sandbox_status", lambda: bare)
    warnings = _sandbox_warnings()
    assert set(warnings) == {"mersv.W101", "mersv.W102"}
    assert "can open network connections" in warnings["mersv.W101"]
    assert "secret key file" in warnings["mersv.W102"]
    # Without a socket filter the network namespace alone still isolates the network.
    monkeypatch.setattr(sandbox, "sandbox_status", lambda: bare.__class__(True, False, 0))
    assert set(_sandbox_warnings()) == {"mersv.W102"}

    # The worker says so too, once, when it starts its first decode server.
    monkeypatch.setattr(isolation, "_sandbox_reported", False)
    with caplog.at_level("WARNING", logger="annotation.ingest.isolation"):
        isolation._report_sandbox()
        isolation._report_sandbox()
    gaps = [r.getMessage() for r in caplog.records if "decode sandbox incomplete" in r.message]
    assert len(gaps) == 1 and "Landlock" in gaps[0]
