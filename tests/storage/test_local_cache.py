"""The bounded local cache of a host with object storage (annotation/storage.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from annotation.storage import CacheVerifyError, LocalCache


def _source(tmp_path: Path, files: dict[str, bytes]) -> FileSystemStorage:
    storage = FileSystemStorage(location=tmp_path / "bucket")
    for name, data in files.items():
        storage.save(name, ContentFile(data))
    return storage


def test_the_least_recently_used_entries_are_evicted_once_the_cache_is_over_its_limit(
    tmp_path: Path,
) -> None:
    data = {f"clips/{i}.npy": bytes([i]) * 1000 for i in range(4)}
    storage = _source(tmp_path, data)
    cache = LocalCache(tmp_path / "cache", limit_bytes=2500)
    paths = {}
    for i, name in enumerate(sorted(data)):
        paths[name] = cache.materialise(storage, name)
        os.utime(paths[name], ns=(i * 10**9, i * 10**9))  # a clear order of use
    # Used again: clips/0 becomes the most recent, so clips/1 and clips/2 went first.
    again = cache.materialise(storage, "clips/0.npy")
    assert again == paths["clips/0.npy"] and again.read_bytes() == data["clips/0.npy"]
    assert cache.size_bytes() <= 2500
    assert not paths["clips/1.npy"].exists() and not paths["clips/2.npy"].exists()
    assert paths["clips/3.npy"].exists()


def test_an_entry_larger_than_the_limit_is_kept_while_it_is_the_one_in_use(tmp_path: Path) -> None:
    storage = _source(tmp_path, {"videos/a.mp4": b"x" * 5000, "videos/b.mp4": b"y" * 10})
    cache = LocalCache(tmp_path / "cache", limit_bytes=1000)
    small = cache.materialise(storage, "videos/b.mp4")
    big = cache.materialise(storage, "videos/a.mp4")
    assert big.read_bytes() == b"x" * 5000
    assert not small.exists()  # evicted to make room, the big one stays for its reader


def test_a_fetched_file_is_named_by_its_content_hash_and_a_mismatch_keeps_nothing(
    tmp_path: Path,
) -> None:
    payload = b"\x00\x00\x00\x18ftypisom video bytes"
    storage = _source(tmp_path, {"videos/v.mp4": payload})
    cache = LocalCache(tmp_path / "cache", limit_bytes=10**6)
    digest = hashlib.sha256(payload).hexdigest()
    with pytest.raises(CacheVerifyError, match="not the recorded"):
        cache.materialise(storage, "videos/v.mp4", sha256="f" * 64)
    assert cache.entries() == []
    path = cache.materialise(storage, "videos/v.mp4", sha256=digest)
    assert path.name == f"{digest}.mp4" and path.read_bytes() == payload
    assert oct(path.stat().st_mode & 0o777) == "0o440"
