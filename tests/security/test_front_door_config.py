"""The front door of docker/: nginx buffers bodies, bounds slow clients, passes the client's
address and scheme, adds the security headers to every answer (errors included), documents
TLS; the compose file routes every client through it. (nginx is not installed on the test
machines: its configuration is read here, directive by directive.)"""

from __future__ import annotations

import re

import yaml
from django.conf import settings

from tests.conftest import ROOT

TEMPLATE = ROOT / "docker" / "nginx.conf.template"


def _directives(text: str) -> list[tuple[str, ...]]:
    """Every directive (name and arguments) of an nginx configuration, in any block."""
    text = re.sub(r"#[^\n]*", "", text)
    found = []
    for statement in re.split(r"[;{}]", text):
        words = re.findall(r'"[^"]*"|\S+', statement)
        if words:
            found.append(tuple(w.strip('"') for w in words))
    return found


def _configuration() -> str:
    """The template as the nginx image fills it in, with this installation's upload limit."""
    template = TEMPLATE.read_text()
    assert "client_max_body_size ${MERSV_MAX_UPLOAD_MB}m;" in template
    return template.replace("${MERSV_MAX_UPLOAD_MB}", str(settings.MAX_UPLOAD_MB))


def _values(name: str) -> list[tuple[str, ...]]:
    return [d[1:] for d in _directives(_configuration()) if d[0] == name]


def _seconds(value: str) -> int:
    return int(value.rstrip("s"))


def test_bodies_are_buffered_whole_limited_like_the_settings_and_bounded_in_time() -> None:
    assert _values("proxy_request_buffering") == [("on",)]
    assert _values("proxy_buffering") == [("on",)]
    assert _values("client_max_body_size") == [(f"{settings.MAX_UPLOAD_MB}m",)]
    # The variable the image fills in is the settings' upload limit, with the same default.
    compose = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
    proxy = compose["services"]["proxy"]
    assert proxy["environment"]["MERSV_MAX_UPLOAD_MB"] == "${MERSV_MAX_UPLOAD_MB:-500}"
    assert settings.MAX_UPLOAD_MB == 500
    assert "MERSV_MAX_UPLOAD_MB=500" in (ROOT / "docker" / "env.example").read_text()
    for name in ("client_body_timeout", "client_header_timeout", "send_timeout"):
        (value,) = _values(name)
        assert 0 < _seconds(value[0]) <= 60, (name, value)


def test_the_client_address_and_scheme_are_set_never_appended() -> None:
    headers = dict(_values("proxy_set_header"))
    assert headers["X-Forwarded-For"] == "$remote_addr"  # not $proxy_add_x_forwarded_for
    assert headers["X-Forwarded-Proto"] == "$scheme" and headers["Host"] == "$host"


def test_every_answer_gets_the_security_headers_errors_included() -> None:
    added = {args[0]: args[1:] for args in _values("add_header")}
    for header in (
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Referrer-Policy",
        "Cross-Origin-Opener-Policy",
    ):
        assert header in added, header
        assert added[header][-1] == "always", header  # on 4xx and 5xx answers too
    text = TEMPLATE.read_text()
    # Only where the application set none: its own CSP stays in force on its pages.
    assert "map $upstream_http_content_security_policy $mersv_csp" in text
    assert "default-src 'none'" in text


def test_requests_reach_gunicorn_only_through_the_proxy_and_tls_is_documented() -> None:
    assert ("mersv_web",) in _values("upstream")
    assert _values("server")[0] == ("web:8000",)
    assert _values("proxy_pass") == [("http://mersv_web",)]
    commented = "\n".join(
        line.lstrip()[1:].strip() for line in TEMPLATE.read_text().splitlines()
        if line.lstrip().startswith("#")
    )  # fmt: skip
    tls = _directives(commented[commented.index("server {") :])
    assert ("listen", "443", "ssl") in tls and ("ssl_protocols", "TLSv1.2", "TLSv1.3") in tls
    assert any(d[0] == "ssl_certificate" for d in tls)

    compose = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
    services = compose["services"]
    assert "ports" not in services["web"] and services["web"]["expose"] == ["8000"]
    volumes = services["proxy"]["volumes"]
    assert "./nginx.conf.template:/etc/nginx/templates/default.conf.template:ro" in volumes
    # Of the services a plain `docker compose up` starts, only the proxy publishes a port; the
    # optional MinIO (profile "minio") publishes its S3 port, where browsers send upload parts.
    published = [s for s, v in services.items() if v.get("ports") and not v.get("profiles")]
    assert published == ["proxy"]
    optional = {
        s: v["profiles"] for s, v in services.items() if v.get("ports") and v.get("profiles")
    }
    assert optional in ({}, {"minio": ["minio"]})
