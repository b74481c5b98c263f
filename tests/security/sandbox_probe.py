"""A decode server whose children, once confined like any decoding child, try what an exploited
decoder would: read the environment, open sockets, read and write files outside their folder.

Run as the decode server (`python -m tests.security.sandbox_probe`, through the sandbox's own
launcher: the same environment, network namespace, fork, limits and confinement as
`annotation.ingest.isolation --serve`); its extra operation "attack" answers what each try
gave. Used by tests/security/test_decode_sandbox.py.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from annotation.ingest import isolation


def _outcome(action: Any) -> str:
    try:
        action()
    except OSError as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    return "done"


def _connect_tcp(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass


def _unix_socket() -> None:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()


def _append(path: Path) -> None:
    with path.open("a") as handle:
        handle.write("tampered\n")


def _attack(request: dict[str, Any]) -> dict[str, Any]:
    targets = request["targets_to_try"]
    found: dict[str, Any] = {"environment": dict(os.environ)}
    found["tcp"] = _outcome(lambda: _connect_tcp(int(targets["port"])))
    found["unix_socket"] = _outcome(_unix_socket)
    found["read_video"] = _outcome(lambda: Path(request["path"]).read_bytes()[:12])
    found["read_secret"] = _outcome(lambda: Path(targets["secret"]).read_text())
    found["read_parent_environ"] = _outcome(
        lambda: Path(f"/proc/{targets['parent_pid']}/environ").read_bytes()
    )
    found["write_export"] = _outcome(
        lambda: (Path(targets["export_dir"]) / "planted.csv").write_text("clip_id\n")
    )
    found["change_export"] = _outcome(lambda: _append(Path(targets["export_file"])))
    found["write_media"] = _outcome(
        lambda: (Path(request["path"]).parent / "planted.mp4").write_bytes(b"x")
    )
    found["signal_parent"] = _outcome(lambda: os.kill(int(targets["parent_pid"]), 0))
    found["write_scratch"] = _outcome(lambda: tempfile.TemporaryFile().close())
    return {"found": found}


isolation._OPERATIONS["attack"] = _attack

if __name__ == "__main__":
    isolation._serve()
