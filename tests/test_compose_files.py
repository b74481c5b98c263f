"""docker/compose.yml and docker/compose.hosts.yml, read as YAML (no Docker daemon or
`docker compose` on the test machines): what the containers are told is what the settings
read, the MinIO profile makes the bucket the settings name, the GPU hosts consume only the
training queue, and the hosts reach PostgreSQL through PgBouncer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from tests.conftest import ROOT

DOCKER = ROOT / "docker"
# Variables that only the compose files use (filled into images and URLs, never read by
# Django): each is documented in env.example.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "MERSV_DB_HOST", "TORCH_INDEX"}
_READ = re.compile(
    r"""(?:env_[a-z]+|os\.environ\.get|os\.getenv|environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
)
_INTERPOLATED = re.compile(r"\$\{([A-Z][A-Z0-9_]*)")


def _compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((DOCKER / name).read_text())


def _variables_read() -> set[str]:
    """Every environment variable the project's code reads (settings and apps)."""
    names: set[str] = set()
    for folder in ("config", "annotation", "datasets", "modeling", "frontend"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(_READ.findall(path.read_text()))
    return names


def _app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the project's image (web, workers, migrate)."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _env_example() -> dict[str, str]:
    found = {}
    for line in (DOCKER / "env.example").read_text().splitlines():
        match = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=(\S*)", line)
        if match:
            found[match[1]] = match[2]
    return found


def _queues(command: list[str]) -> list[str]:
    return command[command.index("-Q") + 1].split(",")


def test_every_variable_the_containers_get_is_one_the_settings_read() -> None:
    read = _variables_read()
    assert {"DATABASE_URL", "MERSV_STORAGE_URL", "MERSV_STORAGE_CORS_ORIGINS"} <= read
    for name in ("compose.yml", "compose.hosts.yml"):
        compose = _compose(name)
        apps = _app_services(compose)
        assert apps, name
        for service, spec in apps.items():
            unknown = set(spec.get("environment", {})) - read
            assert not unknown, f"{name} {service}: {sorted(unknown)} are read by no setting"
            assert spec["env_file"] == ".env"
        # What the files fill in is a setting's variable or one of their own, documented.
        used = set(_INTERPOLATED.findall((DOCKER / name).read_text()))
        assert used - read <= COMPOSE_ONLY, f"{name}: {sorted(used - read - COMPOSE_ONLY)}"
    example = _env_example()
    assert set(example) - read <= COMPOSE_ONLY, sorted(set(example) - read - COMPOSE_ONLY)
    assert set(example) >= COMPOSE_ONLY


def test_the_minio_profile_makes_the_bucket_of_the_storage_url_and_allows_the_site_origin() -> None:
    services = _compose("compose.yml")["services"]
    minio, init = services["minio"], services["minio-init"]
    assert minio["profiles"] == init["profiles"] == ["minio"]
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    bucket = re.match(r"s3://([^/]+)/", _env_example()["MERSV_STORAGE_URL"])[1]
    script = " ".join(init["entrypoint"])
    assert re.search(rf"mc mb -p m/{bucket}\b", script), script
    # The root credentials are the ones the app signs with (MERSV_S3_*), on both sides.
    assert minio["environment"]["MINIO_ROOT_USER"].startswith("${MERSV_S3_ACCESS_KEY_ID")
    assert init["environment"]["U"] == minio["environment"]["MINIO_ROOT_USER"]
    assert minio["environment"]["MINIO_ROOT_PASSWORD"].startswith("${MERSV_S3_SECRET_ACCESS_KEY")
    assert init["environment"]["P"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    # Browsers PUT upload parts from the site's origin: MinIO's server-wide CORS names it.
    cors = minio["environment"]["MINIO_API_CORS_ALLOW_ORIGIN"]
    assert cors.startswith("${MERSV_STORAGE_CORS_ORIGINS:-${DJANGO_CSRF_TRUSTED_ORIGINS"), cors


def test_gpu_and_training_workers_consume_only_the_training_queue() -> None:
    training = settings.CELERY_TASK_ROUTES["modeling.tasks.*"]["queue"]
    default = settings.CELERY_TASK_DEFAULT_QUEUE
    one_host = _compose("compose.yml")["services"]
    assert _queues(one_host["worker-training"]["command"]) == [training]
    assert _queues(one_host["worker"]["command"]) == [default]
    hosts = _compose("compose.hosts.yml")["services"]
    gpu = hosts["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and _queues(gpu["command"]) == [training]
    assert gpu["build"]["args"]["TORCH_INDEX"].startswith("${TORCH_INDEX:-")
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert _queues(hosts["worker"]["command"]) == [default]
    # Nothing else consumes the training queue, and every queue has a consumer.
    consumers = {
        name: _queues(s["command"]) for name, s in hosts.items() if "-Q" in s.get("command", [])
    }
    assert {n for n, q in consumers.items() if training in q} == {"worker-gpu"}
    assert {q for qs in consumers.values() for q in qs} == {default, training}


def test_the_hosts_reach_postgresql_through_pgbouncer_in_transaction_mode() -> None:
    compose = _compose("compose.hosts.yml")
    services = compose["services"]
    bouncer = services["pgbouncer"]
    assert bouncer["profiles"] == ["db"] and bouncer["environment"]["DB_HOST"] == "db"
    assert bouncer["environment"]["POOL_MODE"] == "transaction"
    assert bouncer["depends_on"] == {"db": {"condition": "service_healthy"}}
    [published] = bouncer["ports"]
    port = published.split(":")[0]
    assert "ports" not in services["db"]  # PostgreSQL itself is not published
    for name, spec in _app_services(compose).items():
        env = spec["environment"]
        url = env["DATABASE_URL"]
        through = (
            rf"postgres://mersv:\$\{{POSTGRES_PASSWORD\}}@\$\{{MERSV_DB_HOST[^}}]*\}}:{port}/mersv"
        )
        assert re.fullmatch(through, url), (name, url)
        assert env["CELERY_BROKER_URL"].startswith("redis://${MERSV_DB_HOST")
        # Transaction pooling: no connection kept per process, no server-side cursors.
        assert env["DATABASE_CONN_MAX_AGE"] == "0"
        assert env["DATABASE_DISABLE_SERVER_SIDE_CURSORS"] == "1"
        assert "db" not in spec.get("depends_on", {}), name  # other hosts: no compose link
    assert Path(DOCKER / "compose.hosts.yml").read_text().count("5432/") == 0
