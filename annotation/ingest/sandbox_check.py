"""`manage.py check --deploy` says when the decode sandbox cannot isolate a decoding child.

The worker logs the same once when it starts its first decode server; this check lets an
operator see it before any video arrives. Run it where the workers run (their machine or
container decides what the kernel allows): `python manage.py check --deploy`.
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from annotation.ingest import sandbox

# One id per gap, so that a lab that accepts one can silence it alone (SILENCED_SYSTEM_CHECKS).
CHECK_IDS = {"network": "mersv.W101", "files": "mersv.W102"}
_HINTS = {
    "network": "Run the workers where `unshare --user --map-root-user --net true` works, or "
    "on x86_64 or aarch64 (the seccomp socket filter).",
    "files": "Run the workers on Linux 5.13 or later with Landlock enabled (lsm=...,landlock) "
    "and, in Docker, a seccomp profile that allows the landlock_* calls (Docker 23+).",
}


def decode_sandbox_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    gaps = sandbox.sandbox_status().missing()
    return [
        checks.Warning(
            f"The decode sandbox is incomplete: {text}.", hint=_HINTS[name], id=CHECK_IDS[name]
        )
        for name, text in gaps.items()
    ]


def register() -> None:
    checks.register(decode_sandbox_check, checks.Tags.security, deploy=True)
