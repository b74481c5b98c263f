"""Object storage for real: moto's S3 server on loopback, and a Celery worker on another "host".

``s3_server`` starts moto's standalone server (a real S3 HTTP API, in this process's threads)
once per session. ``object_storage`` points this test process (the web side) at a bucket
prefix of its own, with its own media, cache and runs folders. ``s3_worker`` is a separate
`celery worker` process with another MERSV_VAR_DIR: it shares the database, the broker and
the bucket with the tests, never a folder. Its tasks travel on queues of their own, so a local
worker of the same session never takes them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from config.settings import storages_setting
from tests.conftest import _test_database_url, worker_running

BUCKET = "mersv-test"
KEYS = {"access_key": "testing", "secret_key": "testing-secret"}
QUEUES = ("s3-celery", "s3-training")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    prefix: str  # this session's folder in the bucket

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEYS["access_key"],
            aws_secret_access_key=KEYS["secret_key"],
        )

    def keys(self, under: str = "") -> list[str]:
        client, found, token = self.client(), [], None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{self.prefix}/{under}", **extra)
            found += [o["Key"][len(self.prefix) + 1 :] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    def env(self) -> dict[str, str]:
        return {
            "MERSV_STORAGE_URL": f"s3://{BUCKET}/{self.prefix}",
            "MERSV_S3_ENDPOINT_URL": self.endpoint,
            "MERSV_S3_ACCESS_KEY_ID": KEYS["access_key"],
            "MERSV_S3_SECRET_ACCESS_KEY": KEYS["secret_key"],
            "MERSV_S3_REGION": "us-east-1",
            "MERSV_DIRECT_UPLOAD_PART_MB": "5",
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    # moto checks no signature, but the clients sign as they would against any S3 API.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", KEYS["access_key"])
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", KEYS["secret_key"])
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(endpoint=f"http://127.0.0.1:{port}", prefix=f"s{uuid.uuid4().hex[:8]}")
    s3.client().create_bucket(Bucket=BUCKET)
    yield s3
    server.stop()


@pytest.fixture
def object_storage(s3_server: S3Server, settings, tmp_path: Path) -> S3Server:
    """This process uses the bucket for media, exports and runs (the web host's view)."""
    env = s3_server.env()
    settings.STORAGE_URL = env["MERSV_STORAGE_URL"]
    settings.S3_ENDPOINT_URL = s3_server.endpoint
    settings.STORAGES = storages_setting(
        env["MERSV_STORAGE_URL"],
        endpoint_url=s3_server.endpoint,
        access_key=KEYS["access_key"],
        secret_key=KEYS["secret_key"],
    )
    settings.MEDIA_ROOT = tmp_path / "web-media"
    settings.CACHE_ROOT = tmp_path / "web-cache"
    settings.TRAINING_RUNS_ROOT = tmp_path / "web-runs"
    settings.DIRECT_UPLOAD_PART_MB = 5
    return s3_server


@contextlib.contextmanager
def _own_queues() -> Iterator[None]:
    """Tasks sent from this process go to QUEUES while the block runs."""
    from config.celery import app

    def reset_router() -> None:
        for cached in ("router", "_rtable", "queues", "default_queue"):
            app.amqp.__dict__.pop(cached, None)

    before = (app.conf.task_default_queue, app.conf.task_routes)
    app.conf.task_default_queue = QUEUES[0]
    app.conf.task_routes = {"modeling.tasks.*": {"queue": QUEUES[1]}}
    reset_router()
    try:
        yield
    finally:
        app.conf.task_default_queue, app.conf.task_routes = before
        reset_router()


@pytest.fixture(scope="session")
def s3_worker_process(
    s3_server: S3Server, django_db_setup, django_db_blocker, tmp_path_factory
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A `celery worker` on the bucket with a var folder of its own (another host's disk)."""

    var_dir = tmp_path_factory.mktemp("worker-host")
    env = dict(os.environ)
    env.update(s3_server.env())
    env.update(
        DATABASE_URL=_test_database_url(),
        DJANGO_SETTINGS_MODULE="config.settings",
        MERSV_VAR_DIR=str(var_dir),
        MERSV_TORCH_THREADS="1",
        # What the worker sends on (a first frame after a verified upload) stays on its queues.
        MERSV_QUEUE_DEFAULT=QUEUES[0],
        MERSV_QUEUE_TRAINING=QUEUES[1],
    )
    with worker_running(env, QUEUES, var_dir, "s3") as proc:
        yield proc, var_dir


@pytest.fixture
def s3_worker(s3_worker_process, object_storage) -> Iterator[Path]:
    """The worker host's var folder, while this test's tasks go to that worker."""
    with _own_queues():
        yield s3_worker_process[1]
