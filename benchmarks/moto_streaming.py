"""moto's S3 server, able to join a multipart upload of gigabytes: the join goes through a file.

moto 5.x joins the parts of a multipart upload in memory: all of them in one bytearray, a
second copy for the full-object checksum and a bytes copy of each. For the 2 GiB upload of
`benchmarks/storage.py --big-upload-mb 2048` the stock server grew to 9.8 GB resident on this
24 GB machine and answered CompleteMultipartUpload with 500 (out of memory), three times (boto3
retries). Its parts themselves already lie on disk (a part over MOTO_S3_DEFAULT_KEY_BUFFER_SIZE,
5 MB, is a spooled temporary file in TMPDIR).

Here the join copies the parts one at a time into the new object's spooled temporary file,
with the full-object checksum computed as the bytes pass (CRC32, moto's own choice without
awscrt; CRC64-NVMe with awscrt is left to moto, which then keeps its in-memory join), and the
object adopts that file: the server's memory stays at a part's size. Everything else (ETag,
part checks, errors) is moto's. Reading the object back (GetObject) still loads it whole, as
moto does for every object.

    .venv/bin/python benchmarks/moto_streaming.py -H 127.0.0.1 -p PORT   (moto_server's flags)
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Iterator
from typing import Any

from moto.core.compat import HAS_CRT
from moto.s3 import models
from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
from moto.settings import S3_UPLOAD_PART_MIN_SIZE, get_s3_default_key_buffer_size
from moto.utilities.utils import md5_hash

COPY_BYTES = 8 * 1024 * 1024


class JoinedParts:
    """A joined object in a temporary file, handed to FakeKey in place of its bytes."""

    def __init__(self, file: Any, size: int) -> None:
        self.file, self.size = file, size


def _part_copy(part: Any, out: Any) -> int:
    """Append one part's bytes to ``out`` in chunks; the part's size."""
    size = 0
    with part.lock:
        part._value_buffer.seek(0)
        while chunk := part._value_buffer.read(COPY_BYTES):
            out.write(chunk)
            size += len(chunk)
    return size


def complete(self: Any, body: Iterator[tuple[int, str]]) -> tuple[Any, str, Any]:
    """FakeMultipart.complete with the parts joined in a file (see the module docstring)."""
    algorithm = self.metadata.get("x-amz-checksum-algorithm")
    kind = self.metadata.get("x-amz-checksum-type")
    builder = models.MultipartChecksumBuilder(algorithm, kind)
    full_object = builder.checksum_type != "COMPOSITE"
    # moto's full-object checksum is CRC32 unless awscrt gives it CRC64-NVMe: only that one
    # is computed here; any other goes to moto's own join.
    crc32 = builder.checksum_algorithm == "CRC32" or (
        builder.checksum_algorithm == "CRC64NVME" and not HAS_CRT
    )
    if full_object and not crc32:
        return original_complete(self, body)
    # The new key adopts this file (value_set): it outlives the function.
    out = tempfile.SpooledTemporaryFile(get_s3_default_key_buffer_size())  # noqa: SIM115
    md5s, crc, size, count, last = bytearray(), 0, 0, 0, None
    for number, etag in body:
        part = self.parts.get(number)
        if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
            out.close()
            raise InvalidPart()
        if last is not None and last.contentsize < S3_UPLOAD_PART_MIN_SIZE:
            out.close()
            raise EntityTooSmall()
        md5s.extend(bytes.fromhex(part.etag.replace('"', "")))
        start = out.tell()
        size += _part_copy(part, out)
        if full_object:  # CRC32 of the whole object, continued over this part's bytes
            out.seek(start)
            while chunk := out.read(COPY_BYTES):
                crc = binascii.crc32(chunk, crc)
        else:
            builder.addPart(part.value)  # a part's checksum: one part in memory at a time
        last, count = part, count + 1
    if count == 0:
        out.close()
        raise MalformedXML
    etag = md5_hash()
    etag.update(bytes(md5s))
    checksum: tuple[str, str, int] | None
    if full_object:
        checksum = ("FULL_OBJECT", base64.b64encode(crc.to_bytes(4, "big")).decode(), 1)
    else:
        checksum = builder.build()
    out.seek(0)
    return JoinedParts(out, size), f"{etag.hexdigest()}-{count}", checksum


def value_set(self: Any, new_value: Any) -> None:
    """FakeKey.value's setter: a joined object is adopted as the key's file, not copied."""
    if isinstance(new_value, JoinedParts):
        self._value_buffer.close()
        self._value_buffer = new_value.file
        self.contentsize = new_value.size
        return
    original_value.fset(self, new_value)  # type: ignore[attr-defined]


original_complete = models.FakeMultipart.complete
original_value = models.FakeKey.value
models.FakeMultipart.complete = complete  # type: ignore[method-assign]
models.FakeKey.value = property(original_value.fget, value_set)  # type: ignore[method-assign,assignment,attr-defined]


if __name__ == "__main__":
    from moto.server import main

    main()
