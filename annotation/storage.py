"""Where files live: the configured storages (settings.STORAGES) and a bounded local cache.

Three storages: ``default`` (media: videos, previews, first frames, crops, filmstrips, frame
arrays), ``exports`` (frozen dataset exports) and ``runs`` (training checkpoints, experiment-grid
reports, and with object storage pretrained weights files). With no
MERSV_STORAGE_URL they are folders on this machine and every path is used in place. With
object storage (``ObjectStorage``: django-storages' S3 backend) a process that needs a file
as a path (the decode sandbox, numpy, torch) materialises it into ``LocalCache``: downloaded
once, its SHA-256 verified when the content hash is known, kept while the cache is under its
size limit (least recently used entries go first). What a worker makes is written in a local
scratch folder and then published to the storage under the same relative names.
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
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

log = logging.getLogger(__name__)

MEDIA = "default"
EXPORTS = "exports"
RUNS = "runs"
CHUNK_BYTES = 1024 * 1024


class ObjectStorage(S3Storage):  # django-storages ships no types: S3Storage is Any here
    """S3-compatible storage whose ``url()`` can point at the app's own view.

    ``app_url_base`` (the media storage: MEDIA_URL): pages link media through the /media/ view,
    which checks the role before it redirects to a short-lived presigned URL, so a link copied
    off a page is no key to the bucket. Without it ``url()`` is S3Storage's presigned URL.
    """

    def __init__(self, *, app_url_base: str = "", **options: Any) -> None:
        self.app_url_base = app_url_base
        super().__init__(**options)

    def url(
        self,
        name: str,
        parameters: dict[str, str] | None = None,
        expire: int | None = None,
        http_method: str | None = None,
    ) -> str:
        if self.app_url_base:
            return self.app_url_base + filepath_to_uri(name)
        return self.presigned_url(name, parameters=parameters, expire=expire)

    def presigned_url(
        self,
        name: str,
        *,
        parameters: dict[str, str] | None = None,
        expire: int | None = None,
        download_name: str | None = None,
    ) -> str:
        params = dict(parameters or {})
        if download_name:
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        return str(super().url(name, parameters=params or None, expire=expire))

    def key(self, name: str) -> str:
        """The bucket key of a storage name (the location prefix added)."""
        return str(self._normalize_name(clean_name(name)))

    def client(self) -> Any:
        return self.connection.meta.client


def storage_for(alias: str) -> Storage:
    return storages[alias]


def is_local(alias: str) -> bool:
    """True when the storage is a folder on this machine (the embedded default)."""
    return isinstance(storages[alias], FileSystemStorage)


def object_storage(alias: str) -> ObjectStorage:
    storage = storages[alias]
    if not isinstance(storage, ObjectStorage):
        raise RuntimeError(f"the {alias!r} storage is not object storage (MERSV_STORAGE_URL)")
    return storage


class CacheVerifyError(OSError):
    """A file fetched from the storage does not hash to the content hash it was asked for."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256_stream(fileobj: IO[bytes]) -> str:
    """The SHA-256 of an open file from its start; leaves its position at the start."""
    digest = hashlib.sha256()
    fileobj.seek(0)
    while chunk := fileobj.read(CHUNK_BYTES):
        digest.update(chunk)
    fileobj.seek(0)
    return digest.hexdigest()


class LocalCache:
    """Files fetched from a storage, on this machine, at most ``limit_bytes`` in all.

    An entry is named by the content's SHA-256 when the caller knows it (source videos, the
    files of a frozen export: verified on every download, a mismatch is refused and nothing
    is kept), else by a hash of the storage name (generated media names are written once and
    never reused, so a name stands for one content). Entries are written to a temporary file
    and renamed, so a reader never sees half a file; a lock file serialises the processes of
    one machine that share the cache while they fetch and evict.
    """

    def __init__(self, root: Path, *, limit_bytes: int) -> None:
        self.root = Path(root)
        self.limit_bytes = limit_bytes

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def entry_path(self, key: str, suffix: str = "") -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def materialise(
        self, storage: Storage, name: str, *, sha256: str | None = None, version: str = ""
    ) -> Path:
        """A local path holding the storage's file ``name`` (its hash checked if given).
        ``version`` (e.g. the object's size and time) joins a name-keyed entry's key, for a
        name whose content may be replaced (weights an admin uploads again)."""
        suffix = Path(name).suffix.lower()
        if sha256:
            key = sha256
        else:
            where = getattr(storage, "location", "") or ""
            named = f"{where}\0{name}" + (f"\0{version}" if version else "")
            key = "n" + hashlib.sha256(named.encode()).hexdigest()[1:]
        path = self.entry_path(key, suffix)
        with self._locked():
            if path.is_file():
                os.utime(path)  # most recently used
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".fetch-")
            try:
                digest = hashlib.sha256()
                with os.fdopen(handle, "wb") as out, storage.open(name, "rb") as src:
                    while chunk := src.read(CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
                if sha256 and digest.hexdigest() != sha256:
                    raise CacheVerifyError(
                        f"{name} in the storage hashes to {digest.hexdigest()}, not the "
                        f"recorded {sha256}: the stored object was altered or replaced"
                    )
                os.chmod(temporary, 0o440)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise
            self._evict(keep=path)
        return path

    def adopt(self, source: Path, *, sha256: str, suffix: str | None = None) -> Path:
        """Keep a local file this process made (e.g. an upload it verified) as the entry of
        ``sha256``, so the next materialise on this machine needs no download."""
        path = self.entry_path(sha256, (source.suffix if suffix is None else suffix).lower())
        with self._locked():
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f".adopt-{uuid.uuid4().hex}")
                shutil.copyfile(source, temporary)
                os.chmod(temporary, 0o440)
                os.replace(temporary, path)
                self._evict(keep=path)
        return path

    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("*/*") if p.is_file() and not p.name.startswith(".")]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def _evict(self, *, keep: Path) -> None:
        """Remove the least recently used entries until the cache fits its limit (call
        with the lock held); ``keep``, the entry just used, stays even if it alone is over."""
        entries = sorted(
            ((p.stat().st_mtime_ns, p.stat().st_size, p) for p in self.entries()),
            key=lambda item: item[0],
        )
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.limit_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                total -= size
                log.info("cache: evicted %s (%d bytes)", path.name, size)


def cache(kind: str = "files") -> LocalCache:
    """This machine's cache (MERSV_CACHE_ROOT, at most MERSV_CACHE_MB)."""
    return LocalCache(Path(settings.CACHE_ROOT) / kind, limit_bytes=settings.CACHE_MB * 1024 * 1024)


def media_local_path(name: str, *, sha256: str | None = None) -> Path:
    """A local path of the media file ``name``: in place on a local storage, else the cached
    copy (fetched, and verified against ``sha256`` when given)."""
    storage = storage_for(MEDIA)
    if isinstance(storage, FileSystemStorage):
        return Path(storage.path(name))
    return cache().materialise(storage, name, sha256=sha256 or None)


def media_read(name: str) -> bytes:
    with storage_for(MEDIA).open(name, "rb") as f:
        data: bytes = f.read()
    return data


def media_publish(folder: Path) -> list[str]:
    """Object storage: write every file of ``folder`` (a folder under MEDIA_ROOT that a worker
    filled) to the media storage under its name relative to MEDIA_ROOT, then remove the local
    folder; all or nothing (a failed write deletes what it had written). Local storage: the
    files are in place already. Returns the storage names written."""
    if is_local(MEDIA):
        return []
    storage = storage_for(MEDIA)
    written: list[str] = []
    try:
        written = folder_publish(storage, Path(settings.MEDIA_ROOT), folder, written=written)
    except BaseException:
        for name in written:
            with contextlib.suppress(Exception):
                storage.delete(name)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return written


def media_unpublish(names: list[str]) -> None:
    """Delete media files written by ``media_publish`` whose rows were never written."""
    storage = storage_for(MEDIA)
    for name in names:
        with contextlib.suppress(Exception):
            storage.delete(name)


def folder_publish(
    storage: Storage, root: Path, folder: Path, *, written: list[str] | None = None
) -> list[str]:
    """Save every file under ``folder`` as its path relative to ``root``; ``written`` (when
    given) is filled as it goes, so a caller can undo a partial write."""
    names = written if written is not None else []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        with path.open("rb") as f:
            saved = storage.save(name, File(f, name=path.name))
        if saved != name:  # file_overwrite keeps names; anything else would break references
            raise OSError(f"the storage renamed {name} to {saved}")
        names.append(name)
    return names


def storage_tree_delete(storage: Storage, prefix: str) -> None:
    """Delete every file under the folder ``prefix`` of a storage (nothing there: no-op)."""
    if isinstance(storage, FileSystemStorage):
        shutil.rmtree(Path(storage.path(prefix)), ignore_errors=True)
        return
    try:
        folders, files = storage.listdir(prefix)
    except FileNotFoundError:
        return
    for name in files:
        storage.delete(f"{prefix}/{name}")
    for sub in folders:
        storage_tree_delete(storage, f"{prefix}/{sub}")


def upload_to_storage(storage: Storage, name: str, fileobj: IO[bytes]) -> str:
    saved: str = storage.save(name, File(fileobj, name=Path(name).name))
    return saved
