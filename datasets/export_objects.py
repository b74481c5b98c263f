"""A frozen export as objects in the ``exports`` storage (object storage only).

Layout in the storage::

    <version name>/<path>          every file of the export, MANIFEST.sha256 included
    archives/<version name>.tar    the download: ``stream_tar`` of the verified export

The files are written from the export folder the build made (``verify_export`` passed), the
archive from the same folder while ``stream_tar`` hashes every member; its SHA-256 and size go
into the version's row with the freeze, and a download checks the object against them before
it hands out a presigned URL. A process on another host materialises the export into
``CACHE_ROOT/exports/<version name>``: the manifest must hash to the version's content hash
and every file to its manifest line, or nothing is kept. Materialised exports count against
MERSV_EXPORT_CACHE_MB (least recently used first; the one in use stays).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage

from annotation.storage import CHUNK_BYTES, EXPORTS, object_storage, storage_tree_delete
from datasets.export import MANIFEST_NAME, manifest_entries, stream_tar, verify_export

log = logging.getLogger(__name__)
ARCHIVES = "archives"


class ExportObjectsError(OSError):
    """The export's objects in the storage are missing or do not match the frozen hash."""


def archive_name(version_name: str) -> str:
    return f"{ARCHIVES}/{version_name}.tar"


def export_cache_root() -> Path:
    return Path(settings.CACHE_ROOT) / "exports"


@contextlib.contextmanager
def _cache_locked() -> Iterator[None]:
    root = export_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def export_publish(folder: Path, *, version_name: str, archive_root: str) -> tuple[str, int]:
    """Write a verified export folder's files and its tar archive to the exports storage;
    returns the archive's (SHA-256, size in bytes)."""
    storage = object_storage(EXPORTS)
    names = sorted([*manifest_entries(folder), MANIFEST_NAME])
    storage_tree_delete(storage, version_name)  # a failed build's leftovers
    for relative in names:
        with folder.joinpath(*relative.split("/")).open("rb") as f:
            storage.save(f"{version_name}/{relative}", File(f, name=Path(relative).name))
    scratch = Path(settings.CACHE_ROOT) / "outgoing"
    scratch.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=scratch, prefix="archive-", suffix=".tar") as tar:
        for chunk in stream_tar(folder, root=archive_root):
            digest.update(chunk)
            tar.write(chunk)
            size += len(chunk)
        tar.flush()
        # boto3's managed transfer: a multipart upload in parallel parts for a large archive.
        storage.client().upload_file(
            tar.name,
            storage.bucket_name,
            storage.key(archive_name(version_name)),
            ExtraArgs={
                "ContentType": "application/x-tar",
                "Metadata": {"sha256": digest.hexdigest()},
            },
        )
    return digest.hexdigest(), size


def archive_problems(version_name: str, *, sha256: str, size: int) -> list[str]:
    """What differs between the stored archive and the SHA-256 and size frozen with the
    version (checked from the object's metadata, no download); empty when it matches."""
    storage = object_storage(EXPORTS)
    try:
        head = storage.client().head_object(
            Bucket=storage.bucket_name, Key=storage.key(archive_name(version_name))
        )
    except storage.client().exceptions.ClientError:
        return [f"missing: {archive_name(version_name)}"]
    problems = []
    if int(head["ContentLength"]) != size:
        problems.append(
            f"altered: {archive_name(version_name)} has {head['ContentLength']} bytes, not {size}"
        )
    if head.get("Metadata", {}).get("sha256") != sha256:
        problems.append(
            f"altered: {archive_name(version_name)} (its SHA-256 is not the frozen one)"
        )
    return problems


def archive_download_url(version_name: str, *, download_name: str) -> str:
    return object_storage(EXPORTS).presigned_url(
        archive_name(version_name), download_name=download_name
    )


def export_materialise(version_name: str, *, content_hash: str) -> Path:
    """The export of a frozen version as a local folder on this host, verified against its
    content hash: reused when the cached copy is intact, else fetched from the storage."""
    folder = export_cache_root() / version_name
    with _cache_locked():
        if folder.is_dir() and not verify_export(
            folder, content_hash=content_hash, reuse_hashes=True
        ):
            os.utime(folder)
            return folder
        storage = object_storage(EXPORTS)
        staging = folder.with_name(f".{version_name}.{uuid.uuid4().hex[:8]}")
        try:
            staging.mkdir(parents=True)
            manifest = _fetch(storage, f"{version_name}/{MANIFEST_NAME}", staging / MANIFEST_NAME)
            if manifest != content_hash:
                raise ExportObjectsError(
                    f"the stored manifest of {version_name!r} hashes to {manifest}, not the "
                    f"frozen content hash {content_hash}: rebuild the export with `python "
                    f"manage.py export_dataset {version_name} --out DIR`"
                )
            for relative, expected in sorted(manifest_entries(staging).items()):
                target = staging.joinpath(*relative.split("/"))
                if _fetch(storage, f"{version_name}/{relative}", target) != expected:
                    raise ExportObjectsError(
                        f"the stored {relative} of {version_name!r} does not match its manifest "
                        "line: the object was altered"
                    )
            problems = verify_export(staging, content_hash=content_hash)
            if problems:
                raise ExportObjectsError(f"{version_name!r}: {problems[0]}")
            if folder.exists():
                retired = folder.with_name(f".{version_name}.retired-{uuid.uuid4().hex[:8]}")
                folder.rename(retired)
                shutil.rmtree(retired, ignore_errors=True)
            staging.rename(folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _evict(keep=folder)
    return folder


def _fetch(storage: Storage, name: str, target: Path) -> str:
    """Download one object to ``target``; its SHA-256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        src_file = storage.open(name, "rb")
    except FileNotFoundError:
        raise ExportObjectsError(f"{name} is missing from the exports storage") from None
    except OSError as exc:
        raise ExportObjectsError(
            f"{name} could not be read from the exports storage: {exc}"
        ) from exc
    with src_file as src, target.open("xb") as out:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _evict(*, keep: Path) -> None:
    """Drop least recently used export folders past MERSV_EXPORT_CACHE_MB (lock held)."""
    limit = settings.EXPORT_CACHE_MB * 1024 * 1024
    folders = sorted(
        (p for p in export_cache_root().iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime_ns,
    )
    sizes = {p: _folder_bytes(p) for p in folders}
    total = sum(sizes.values())
    for folder in folders:
        if total <= limit:
            break
        if folder == keep:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= sizes[folder]
        log.info("export cache: evicted %s", folder.name)
