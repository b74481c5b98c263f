"""The client's address comes from X-Forwarded-For only when the peer is a trusted proxy;
the audit log records that address (annotation/access/client_address.py)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from annotation.access.client_address import client_address_from
from annotation.models import AuditEvent
from tests.security.conftest import PASSWORD, World

PROXIES = ["10.0.0.2", "172.16.0.0/12"]


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("10.0.0.2", "192.0.2.7", "192.0.2.7"),  # one trusted proxy
        ("10.0.0.2", "6.6.6.6, 192.0.2.7", "192.0.2.7"),  # the client's own claim is ignored
        ("10.0.0.2", "192.0.2.7, 172.16.3.4", "192.0.2.7"),  # two proxies in a chain
        ("10.0.0.2", "172.16.3.4, 172.16.3.5", "172.16.3.4"),  # proxies all the way
        ("10.0.0.2", "192.0.2.7, not-an-address", "10.0.0.2"),  # a hop our proxy never writes
        ("10.0.0.2", "2001:db8::7", "2001:db8::7"),
        ("10.0.0.2", "", "10.0.0.2"),
        ("198.51.100.9", "192.0.2.7", "198.51.100.9"),  # an untrusted peer: header ignored
    ],
)
def test_the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy(
    remote: str, forwarded: str, client: str
) -> None:
    assert client_address_from(remote, forwarded, PROXIES) == client


def test_with_no_trusted_proxies_the_header_is_never_read() -> None:
    assert client_address_from("10.0.0.2", "192.0.2.7", []) == "10.0.0.2"


def test_the_audit_log_shows_the_forwarded_client_only_through_a_trusted_proxy(
    world: World, settings
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.2"]
    credentials = {"username": "sec-curator", "password": PASSWORD}
    Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.44").post(
        reverse("login"), credentials
    )
    # A client that writes the header itself, straight to the web server: ignored.
    Client(REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR="192.0.2.45").post(
        reverse("login"), credentials
    )
    Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.46").post(
        reverse("api-token"), credentials
    )
    events = AuditEvent.objects.filter(username="sec-curator", action="login_ok").order_by("id")
    assert [str(e.ip) for e in events] == ["192.0.2.44", "198.51.100.9", "192.0.2.46"]
    assert events[2].detail["via"] == "token"


def test_a_malformed_proxy_setting_stops_the_start_with_its_reason() -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "MERSV_TRUSTED_PROXIES": "10.0.0.300",
             "PATH": "/usr/bin:/bin", **_env_keep()},
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode != 0
    assert "MERSV_TRUSTED_PROXIES: '10.0.0.300' is not an IP address or CIDR" in run.stderr


def _env_keep() -> dict[str, str]:
    import os

    return {k: os.environ[k] for k in ("PYTHONPATH", "MERSV_VAR_DIR") if k in os.environ}
