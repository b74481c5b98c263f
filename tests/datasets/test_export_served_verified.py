"""A frozen version's export is served only while its files are the frozen ones.

The download (page and API) checks the export against the version's content hash and its
manifest before the first byte, and the stream hashes every member it sends. A byte changed on
disk refuses the download with the files named, says so on the version page, and writes an
`export_verify_failed` audit event.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest
from django.test import Client

from annotation.models import AuditEvent
from datasets.export import ExportChangedError, stream_tar, verify_export
from datasets.services import export_dir_for
from tests.security.conftest import version_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator_and_version(make_user, settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"
    curator = make_user("curator")
    client = Client()
    client.force_login(curator)
    return client, version_make("verified-v1", curator)


def _flip_a_byte(path, *, keep_mtime: bool = False) -> None:
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[2] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:  # a tamperer who puts the old time stamps back
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _download_bytes(client: Client, name: str) -> bytes:
    answer = client.get(f"/datasets/{name}/download/")
    assert answer.status_code == 200 and answer.streaming
    return b"".join(answer.streaming_content)


def test_an_intact_export_is_served(curator_and_version) -> None:
    client, version = curator_and_version
    with tarfile.open(fileobj=io.BytesIO(_download_bytes(client, version.name))) as archive:
        assert "mersv-verified-v1/README.md" in archive.getnames()
    assert not AuditEvent.objects.filter(action="export_verify_failed").exists()


def test_a_byte_changed_on_disk_refuses_the_download_and_the_page_names_the_file(
    curator_and_version,
) -> None:
    client, version = curator_and_version
    _download_bytes(client, version.name)  # served, and its hashes now known to this process
    _flip_a_byte(export_dir_for(version) / "README.md")

    page = client.get(f"/datasets/{version.name}/download/", follow=True)
    assert not page.streaming
    text = page.content.decode()
    assert "no longer matches its frozen manifest" in text
    assert 'id="export-altered"' in text and "altered: README.md" in text
    assert "Download export (.tar)" not in text

    api = client.get(f"/api/datasets/{version.name}/download/")
    assert api.status_code == 409
    assert api.json()["files"] == ["altered: README.md (SHA-256 differs from MANIFEST.sha256)"]

    events = AuditEvent.objects.filter(action="export_verify_failed", object_id=str(version.pk))
    assert events.count() == 2
    assert "altered: README.md" in events.first().detail["problems"][0]
    assert not AuditEvent.objects.filter(action="export_download").count() > 1


def test_a_rewrite_that_keeps_the_old_mtime_is_still_caught(curator_and_version) -> None:
    client, version = curator_and_version
    _download_bytes(client, version.name)
    _flip_a_byte(export_dir_for(version) / "README.md", keep_mtime=True)
    assert client.get(f"/api/datasets/{version.name}/download/").status_code == 409


def test_a_manifest_rewritten_to_match_the_changed_file_is_caught_by_the_content_hash(
    curator_and_version,
) -> None:
    client, version = curator_and_version
    folder = export_dir_for(version)
    _flip_a_byte(folder / "README.md")
    digest = hashlib.sha256((folder / "README.md").read_bytes()).hexdigest()
    (folder / "MANIFEST.sha256").write_text(f"{digest}  README.md\n")
    assert verify_export(folder) == []  # consistent with itself...
    answer = client.get(f"/api/datasets/{version.name}/download/")
    assert answer.status_code == 409  # ...but not the frozen version's
    assert "MANIFEST.sha256 (its SHA-256 is not the version's content hash)" in str(
        answer.json()["files"]
    )


def test_the_stream_itself_cuts_the_archive_at_a_file_changed_after_the_check(
    curator_and_version,
) -> None:
    _client, version = curator_and_version
    folder = export_dir_for(version)
    changed: list[str] = []
    chunks = stream_tar(folder, content_hash=version.content_hash, on_changed=changed.append)
    first = next(chunks)  # the README's header: the check before the first byte has passed
    _flip_a_byte(folder / "README.md")
    sent = bytearray(first)
    with pytest.raises(ExportChangedError, match=r"README\.md"):
        for chunk in chunks:
            sent += chunk
    assert b"est export" not in sent  # not a byte of the changed file went out
    assert changed == ["README.md"]
