"""The export directory of a frozen dataset version: written once, byte-identical when rebuilt.

Layout (every path relative to the export directory)::

    clips.csv, ratings.csv            the exchange format (annotation/exchange.py), plus kinematics
    distributions.csv                 clip_id, p_A..p_E, n, mean, std, mode
    splits.csv, inner_splits.csv      outer folds; inner train/val per outer fold
    parquet/<table>.parquet           the same five tables with exact types and full precision
    README.md                         the datasheet
    videos/..., crops/..., ...        the copied media (the ``files`` argument)
    MANIFEST.sha256                   "<sha256>  <path>" for every other file, sorted by path

The content hash of a version is the SHA-256 of MANIFEST.sha256; since the manifest lists
every other file (README.md included), it pins the whole export. ``sha256sum -c
MANIFEST.sha256`` checks an export with standard tools.

Serving: a download is checked before its first byte (``verify_export`` with the version's
content hash: the manifest must hash to it and every file to its manifest line) and again
while it streams (``stream_tar`` hashes every member it sends and cuts the archive at the first
file that differs). The check before the first byte may reuse a file's hash from an earlier
download of this process while the file's (device, inode, size, mtime_ns, ctime_ns) are
unchanged: a rewrite that puts the old mtime back still moves ctime, which no system call
sets back. What could slip past that key (a write to the raw disk, a clock set back) is caught
while streaming, since every streamed byte is hashed: hashing (about 1.1 GB/s here) is
faster than the network a download goes over, so the stream always hashes.

Determinism: rows are sorted, CSV floats use Python's shortest round-trip repr, line endings
are LF, Parquet files carry no pandas metadata and fixed compression. The bytes depend on the
data and on the pyarrow version (Parquet files name their writer, e.g. "parquet-cpp-arrow
version 26.0.1"): the same data gives the same content hash in the same environment.

Plain pandas/pyarrow, no Django.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import secrets
import shutil
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from annotation import exchange
from annotation.exchange import Column, ColumnKind

MANIFEST_NAME = "MANIFEST.sha256"
README_NAME = "README.md"
PARQUET_DIR = "parquet"
COPY_CHUNK_BYTES = 1 << 20  # streamed copies and hashes: memory stays bounded for large videos
MAX_COMPONENT_BYTES = 255  # the usual file-name limit of Linux, macOS and Windows file systems


@dataclass(frozen=True)
class TableSpec:
    """The fixed columns of one exported table and the keys its rows are sorted by."""

    columns: tuple[Column, ...]
    sort_by: tuple[str, ...]
    unique_by: tuple[str, ...] | None  # None: duplicate rows are allowed (ratings)
    allowed_values: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


# The columns are the exchange format's (annotation/exchange.py); the exporter adds the
# order of the rows and what must be unique.
TABLES: dict[str, TableSpec] = {
    "clips": TableSpec(
        columns=exchange.EXPORT_CLIP_COLUMNS,
        sort_by=("clip_id",),
        unique_by=("clip_id",),
    ),
    "ratings": TableSpec(
        columns=exchange.RATING_COLUMNS,
        sort_by=("clip_id", "rater_id", "grade"),
        unique_by=None,
        allowed_values={"grade": exchange.GRADE_VALUES},
    ),
    "distributions": TableSpec(
        columns=exchange.DISTRIBUTION_COLUMNS,
        sort_by=("clip_id",),
        unique_by=("clip_id",),
        allowed_values={"mode": exchange.GRADE_VALUES},
    ),
    "splits": TableSpec(
        columns=exchange.SPLIT_COLUMNS,
        sort_by=("clip_id",),
        unique_by=("clip_id",),
    ),
    "inner_splits": TableSpec(
        columns=exchange.INNER_SPLIT_COLUMNS,
        sort_by=("outer_fold", "clip_id"),
        unique_by=("outer_fold", "clip_id"),
        allowed_values={"subset": exchange.SUBSET_VALUES},
    ),
}
TABLE_NAMES: tuple[str, ...] = tuple(TABLES)


@dataclass(frozen=True)
class ExportResult:
    """What a finished export is: its content hash (SHA-256 of MANIFEST.sha256) and size.

    ``n_files`` and ``total_bytes`` count every file of the export, the manifest included.
    """

    out_dir: Path
    content_hash: str
    n_files: int
    total_bytes: int


# ---------------------------------------------------------------------------------------------
# Paths


def validate_export_path(path: str) -> str:
    """Return ``path`` if it is a plain relative POSIX path inside an export, else ValueError.

    Refused: empty, absolute, ``.`` or ``..`` components, empty components (``a//b``, a
    trailing slash), backslashes, NUL or other control characters (a newline would break the
    one-path-per-line manifest), and components longer than 255 bytes in UTF-8.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"Export path {path!r} must be a non-empty string.")
    if path.startswith("/"):
        raise ValueError(f"Export path {path!r} is absolute; give a path relative to the export.")
    if "\\" in path:
        raise ValueError(f"Export path {path!r} contains a backslash; use '/' between folders.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise ValueError(f"Export path {path!r} contains a NUL or another control character.")
    for component in path.split("/"):
        if component in ("", ".", ".."):
            raise ValueError(
                f"Export path {path!r} has an empty, '.' or '..' component; it must name a file "
                f"inside the export without leaving it."
            )
        try:
            encoded = component.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"Export path {path!r} is not valid UTF-8.") from exc
        if len(encoded) > MAX_COMPONENT_BYTES:
            raise ValueError(
                f"Export path {path!r} has a component longer than {MAX_COMPONENT_BYTES} bytes."
            )
    return path


def _check_layout(paths: list[str]) -> None:
    """Refuse two paths that would land on the same file, or a file used as a folder."""
    seen: dict[str, str] = {}
    for path in paths:
        # Case-insensitive file systems (macOS, Windows) would merge these on extraction.
        folded = path.casefold()
        if folded in seen:
            raise ValueError(f"Export paths {seen[folded]!r} and {path!r} name the same file.")
        seen[folded] = path
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth]).casefold()
            if folder in seen:
                raise ValueError(
                    f"Export path {path!r} lies inside {seen[folder]!r}, which is a file."
                )


# ---------------------------------------------------------------------------------------------
# Tables


def _normalise_table(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Fixed columns in a fixed order, exact types, sorted rows; ValueError on bad input."""
    spec = TABLES[name]
    missing = [c for c in spec.names if c not in frame.columns]
    extra = [str(c) for c in frame.columns if c not in spec.names]
    if missing or extra:
        raise ValueError(
            f"Table {name!r} must have exactly the columns {', '.join(spec.names)}; "
            f"missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}."
        )
    out = pd.DataFrame(index=range(len(frame)))
    for column in spec.columns:
        values = frame[column.name].reset_index(drop=True)
        out[column.name] = _typed_column(name, column, values)
        allowed = spec.allowed_values.get(column.name)
        if allowed is not None:
            bad = sorted(set(out[column.name].dropna()) - allowed)
            if bad:
                raise ValueError(
                    f"Table {name!r}, column {column.name!r}: values must be one of "
                    f"{', '.join(sorted(allowed))}; got {', '.join(map(repr, bad[:5]))}."
                )
    if spec.unique_by is not None:
        duplicated = out[out.duplicated(list(spec.unique_by), keep=False)]
        if len(duplicated):
            example = duplicated.iloc[0][list(spec.unique_by)].to_dict()
            raise ValueError(
                f"Table {name!r} has {len(duplicated)} rows sharing their "
                f"{' + '.join(spec.unique_by)} with another row, e.g. {example}."
            )
    # Sort keys first, then every other column, so even duplicate keys come out in one order.
    order = list(spec.sort_by) + [c for c in spec.names if c not in spec.sort_by]
    return out.sort_values(order, kind="stable", na_position="last", ignore_index=True)


def _typed_column(table: str, column: Column, values: pd.Series) -> pd.Series:
    where = f"Table {table!r}, column {column.name!r}"
    missing = values.isna()
    if missing.any() and not column.nullable:
        raise ValueError(f"{where} has {int(missing.sum())} missing value(s); each row needs one.")
    if column.kind == "str":
        return pd.Series(
            [None if gone else str(v) for v, gone in zip(values, missing, strict=True)],
            dtype=object,
        )
    try:
        numbers = pd.to_numeric(values, errors="raise").astype("float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} must be numeric: {exc}") from exc
    if column.kind == "float":
        return numbers
    if not (numbers % 1 == 0).all():  # also false for inf
        raise ValueError(f"{where} must hold whole numbers.")
    return numbers.astype("int64")


def _check_references(tables: Mapping[str, pd.DataFrame]) -> None:
    """Every clip_id of the other tables must be a clip of the version."""
    clip_ids = set(tables["clips"]["clip_id"])
    for name, frame in tables.items():
        unknown = sorted(set(frame["clip_id"]) - clip_ids)
        if unknown:
            raise ValueError(
                f"Table {name!r} names {len(unknown)} clip(s) missing from 'clips', "
                f"e.g. {', '.join(unknown[:5])}."
            )


def _csv_bytes(name: str, frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV with LF endings; floats as Python's shortest round-trip repr, missing = ''."""
    text = frame.copy()
    for column in TABLES[name].columns:
        if column.kind == "float":
            text[column.name] = [
                "" if math.isnan(v) else repr(float(v)) for v in frame[column.name]
            ]
    return text.to_csv(index=False, lineterminator="\n", na_rep="").encode("utf-8")


_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "str": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
}


def _parquet_bytes(name: str, frame: pd.DataFrame) -> bytes:
    """Parquet built column by column: no pandas metadata (it names the pandas version)."""
    columns = TABLES[name].columns
    table = pa.table(
        {
            c.name: pa.array(frame[c.name].tolist(), type=_ARROW_TYPES[c.kind], from_pandas=True)
            for c in columns
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", compression_level=3)
    return buffer.getvalue()


def read_export_tables(export_dir: Path) -> dict[str, pd.DataFrame]:
    """The five tables of an export, from its Parquet files (exact types, full precision)."""
    tables: dict[str, pd.DataFrame] = {}
    for name in TABLE_NAMES:
        path = Path(export_dir) / PARQUET_DIR / f"{name}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: is {export_dir} a dataset export?")
        tables[name] = pq.read_table(path).to_pandas()
    return tables


# ---------------------------------------------------------------------------------------------
# Writing


@dataclass
class _Writer:
    """Writes files under ``root`` and remembers each one's SHA-256 and size."""

    root: Path
    progress: Callable[[int, int], None] | None
    n_planned: int
    digests: dict[str, tuple[str, int]] = field(default_factory=dict)

    def _done(self, relative: str, digest: str, size: int) -> None:
        self.digests[relative] = (digest, size)
        if self.progress is not None:
            self.progress(len(self.digests), self.n_planned)

    def _target(self, relative: str) -> Path:
        target = self.root.joinpath(*relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_bytes(self, relative: str, data: bytes) -> None:
        with self._target(relative).open("xb") as out:
            out.write(data)
        self._done(relative, hashlib.sha256(data).hexdigest(), len(data))

    def copy_file(self, relative: str, source: Path) -> None:
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as src, self._target(relative).open("xb") as out:
            while chunk := src.read(COPY_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        self._done(relative, digest.hexdigest(), size)


def _manifest_bytes(digests: Mapping[str, tuple[str, int]]) -> bytes:
    # Two spaces: the format `sha256sum` writes and `sha256sum -c` reads.
    return "".join(f"{digests[p][0]}  {p}\n" for p in sorted(digests)).encode("utf-8")


def write_export(
    out_dir: Path,
    *,
    clips: pd.DataFrame,
    ratings: pd.DataFrame,
    distributions: pd.DataFrame,
    splits: pd.DataFrame,
    inner_splits: pd.DataFrame,
    files: Mapping[str, Path],
    datasheet_markdown: str,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write a dataset version's export to ``out_dir``; the same inputs give the same bytes.

    Table columns are fixed (see ``TABLES``; missing or unexpected columns are a ValueError);
    row order and dtypes of the inputs do not matter. ``files`` maps a relative path in the
    export (``videos/v0001.mp4``) to the source file to copy; every ``video`` of ``clips`` must
    be one of them. ``progress(done, total)`` is called after each file written.

    Everything is written to a temporary folder beside ``out_dir`` and renamed at the end, so a
    failure leaves nothing half-written. An ``out_dir`` that exists and is not empty is refused
    unless ``overwrite`` is True (then it is replaced, only once the new export is complete).
    """
    out_dir = Path(out_dir)
    tables = {
        name: _normalise_table(name, frame)
        for name, frame in (
            ("clips", clips),
            ("ratings", ratings),
            ("distributions", distributions),
            ("splits", splits),
            ("inner_splits", inner_splits),
        )
    }
    _check_references(tables)
    file_paths = [validate_export_path(p) for p in sorted(files)]
    for video in tables["clips"]["video"]:
        validate_export_path(video)
    missing_videos = sorted(set(tables["clips"]["video"]) - set(file_paths))
    if missing_videos:
        raise ValueError(
            f"{len(missing_videos)} video(s) named in clips are not among the files to copy, "
            f"e.g. {', '.join(missing_videos[:5])}."
        )
    generated = [f"{n}.csv" for n in TABLE_NAMES]
    generated += [f"{PARQUET_DIR}/{n}.parquet" for n in TABLE_NAMES]
    _check_layout([*generated, README_NAME, MANIFEST_NAME, *file_paths])
    sources = {p: Path(files[p]) for p in file_paths}
    unreadable = [f"{p} <- {s}" for p, s in sources.items() if not s.is_file()]
    if unreadable:
        raise FileNotFoundError(f"Source files missing: {'; '.join(unreadable[:5])}.")
    _check_out_dir(out_dir, overwrite=overwrite)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(out_dir, "partial")
    staging.mkdir()  # unlike mkdtemp, keeps the usual permissions (umask)
    try:
        writer = _Writer(
            root=staging, progress=progress, n_planned=len(generated) + len(file_paths) + 2
        )
        for name, frame in tables.items():
            writer.write_bytes(f"{name}.csv", _csv_bytes(name, frame))
            writer.write_bytes(f"{PARQUET_DIR}/{name}.parquet", _parquet_bytes(name, frame))
        markdown = datasheet_markdown.replace("\r\n", "\n")
        writer.write_bytes(README_NAME, (markdown.rstrip("\n") + "\n").encode("utf-8"))
        for relative, source in sources.items():
            writer.copy_file(relative, source)
        manifest = _manifest_bytes(writer.digests)
        writer.write_bytes(MANIFEST_NAME, manifest)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(
        out_dir=out_dir,
        content_hash=hashlib.sha256(manifest).hexdigest(),
        n_files=len(writer.digests),
        total_bytes=sum(size for _, size in writer.digests.values()),
    )


def _check_out_dir(out_dir: Path, *, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder; choose another path.")
    if any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; choose a new folder or pass overwrite=True "
            f"to replace it."
        )


def _sibling(out_dir: Path, purpose: str) -> Path:
    """A fresh hidden name beside ``out_dir``: same file system, so renames are atomic."""
    return out_dir.parent / f".{out_dir.name}.{purpose}-{secrets.token_hex(8)}"


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished export to ``out_dir``, setting a replaced one aside until then."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    old = _sibling(out_dir, "old")
    out_dir.rename(old)
    try:
        staging.rename(out_dir)
    except BaseException:
        old.rename(out_dir)
        raise
    # The new export is in place: a leftover hidden folder beats reporting a failure.
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Reading back: verification and download


_MANIFEST_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")


def _read_manifest(export_dir: Path) -> tuple[dict[str, str], list[str]]:
    """The manifest's path -> sha256 and the problems found reading it."""
    try:
        text = (export_dir / MANIFEST_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, [f"{MANIFEST_NAME} is missing"]
    entries: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        match = _MANIFEST_LINE.match(line)
        if match is None:
            problems.append(f"{MANIFEST_NAME} line {number} is malformed: {line[:80]!r}")
            continue
        digest, relative = match.groups()
        try:
            validate_export_path(relative)
        except ValueError as exc:
            problems.append(f"{MANIFEST_NAME} line {number}: {exc}")
            continue
        entries[relative] = digest
    if not text.endswith("\n"):
        problems.append(f"{MANIFEST_NAME} does not end with a newline")
    return entries, problems


def manifest_entries(export_dir: Path) -> dict[str, str]:
    """The manifest's path -> SHA-256; ValueError naming the first problem of a bad one."""
    entries, problems = _read_manifest(Path(export_dir))
    if problems:
        raise ValueError(f"{export_dir} is not a readable export: {problems[0]}.")
    return entries


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(COPY_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# Hashes of served files by absolute path: (stat key, sha256); per process, bounded.
_HASHES: dict[str, tuple[tuple[int, ...], str]] = {}
_HASHES_MAX = 100_000


def _stat_key(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _file_sha256_reused(path: Path) -> str:
    """The file's SHA-256, reused from an earlier call while its stat key is unchanged."""
    name = str(path.absolute())
    before = _stat_key(path)
    known = _HASHES.get(name)
    if known is not None and known[0] == before:
        return known[1]
    digest = _file_sha256(path)
    if _stat_key(path) == before:  # not changed while it was read
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        _HASHES[name] = (before, digest)
    return digest


def _hashes_forget(export_dir: Path) -> None:
    prefix = str(Path(export_dir).absolute()) + os.sep
    for name in [n for n in _HASHES if n.startswith(prefix)]:
        del _HASHES[name]


def verify_export(
    export_dir: Path, *, content_hash: str | None = None, reuse_hashes: bool = False
) -> list[str]:
    """Problems found in an export against its manifest; an empty list means intact.

    Reports a missing or malformed manifest, a manifest whose SHA-256 is not ``content_hash``
    (when given: a version's), and files that are missing, altered (different SHA-256, or not
    a regular file) or extra (on disk but not in the manifest). ``reuse_hashes``: reuse a
    file's hash from an earlier check while its stat key is unchanged (see the module's
    docstring); for serving, never for an audit of the disk.
    """
    export_dir = Path(export_dir)
    entries, problems = _read_manifest(export_dir)
    file_hash = _file_sha256_reused if reuse_hashes else _file_sha256
    manifest = export_dir / MANIFEST_NAME
    if content_hash is not None and manifest.is_file() and file_hash(manifest) != content_hash:
        problems.append(f"altered: {MANIFEST_NAME} (its SHA-256 is not the version's content hash)")
    for relative in sorted(entries):
        path = export_dir.joinpath(*relative.split("/"))
        if path.is_symlink() or (path.exists() and not path.is_file()):
            problems.append(f"altered: {relative} is not a regular file")
        elif not path.exists():
            problems.append(f"missing: {relative}")
        elif file_hash(path) != entries[relative]:
            problems.append(f"altered: {relative} (SHA-256 differs from {MANIFEST_NAME})")
    on_disk = sorted(
        (Path(folder) / name).relative_to(export_dir).as_posix()
        for folder, _, names in os.walk(export_dir)
        for name in names
    )
    problems.extend(
        f"extra: {relative} (not in {MANIFEST_NAME})"
        for relative in on_disk
        if relative != MANIFEST_NAME and relative not in entries
    )
    if problems:
        _hashes_forget(export_dir)
    return problems


class ExportChangedError(OSError):
    """A file of an export differed from its manifest while it was being streamed."""

    def __init__(self, relative: str) -> None:
        self.relative = relative
        super().__init__(f"{relative} no longer matches {MANIFEST_NAME}; the download was cut")


_TAR_FILE_MODE = 0o644


@dataclass(frozen=True)
class _TarMember:
    header: bytes
    path: Path
    size: int
    relative: str
    sha256: str | None  # what the streamed bytes must hash to; None: not checked


def _tar_members(
    export_dir: Path, root: str | None, content_hash: str | None = None
) -> list[_TarMember]:
    """The files of the manifest plus the manifest, sorted, each with its fixed tar header and
    the SHA-256 it must have (the manifest's own: ``content_hash``, when given)."""
    export_dir = Path(export_dir)
    entries, problems = _read_manifest(export_dir)
    if problems:
        raise ValueError(f"{export_dir} is not a readable export: {problems[0]}.")
    prefix = "" if root == "" else validate_export_path(root or export_dir.resolve().name) + "/"
    members = []
    for relative in sorted([*entries, MANIFEST_NAME]):
        path = export_dir.joinpath(*relative.split("/"))
        info = tarfile.TarInfo(prefix + relative)
        info.size = path.stat().st_size
        # Fixed metadata: the archive depends on the files' contents only.
        info.mtime = 0
        info.mode = _TAR_FILE_MODE
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
        expected = content_hash if relative == MANIFEST_NAME else entries[relative]
        members.append(
            _TarMember(header=header, path=path, size=info.size, relative=relative, sha256=expected)
        )
    return members


def _padding(size: int) -> int:
    return -size % tarfile.BLOCKSIZE


def _archive_end(members_bytes: int) -> bytes:
    # Two zero blocks end a tar; tarfile pads the archive to whole records, as we do.
    end = 2 * tarfile.BLOCKSIZE
    return b"\0" * (end + -(members_bytes + end) % tarfile.RECORDSIZE)


def tar_size(export_dir: Path, *, root: str | None = None) -> int:
    """The exact byte length of ``stream_tar(export_dir, root=root)`` (a Content-Length)."""
    members = _tar_members(export_dir, root)
    body = sum(len(m.header) + m.size + _padding(m.size) for m in members)
    return body + len(_archive_end(body))


def stream_tar(
    export_dir: Path,
    *,
    root: str | None = None,
    chunk_size: int = COPY_CHUNK_BYTES,
    content_hash: str | None = None,
    on_changed: Callable[[str], None] | None = None,
) -> Iterator[bytes]:
    """An uncompressed tar of the export, as chunks of at most ``chunk_size`` bytes.

    Members are the manifest's files and the manifest, in path order, under the folder
    ``root`` (default: the export folder's name; "" for none), with mtime 0, uid/gid 0, mode
    0644: two calls give the same bytes. Files are read a chunk at a time, so memory stays
    bounded whatever the export's size (suits Django's StreamingHttpResponse). Media are
    already compressed, so the tar is not.

    Every member is hashed as it is sent; one whose bytes differ from its manifest line (the
    manifest from ``content_hash``, when given) ends the archive there: ``on_changed(path)``
    is called, then ExportChangedError raised, so the client gets a short, unusable archive
    instead of altered data.
    """
    members = _tar_members(export_dir, root, content_hash)
    written = 0
    for member in members:
        yield member.header
        remaining = member.size
        digest = hashlib.sha256()
        with member.path.open("rb") as f:
            while remaining:
                chunk = f.read(min(chunk_size, remaining))
                if not chunk:
                    raise OSError(f"{member.path} shrank while being archived.")
                remaining -= len(chunk)
                digest.update(chunk)
                if not remaining and member.sha256 not in (None, digest.hexdigest()):
                    _hashes_forget(Path(export_dir))
                    if on_changed is not None:
                        on_changed(member.relative)
                    raise ExportChangedError(member.relative)
                yield chunk
        padding = b"\0" * _padding(member.size)
        if padding:
            yield padding
        written += len(member.header) + member.size + len(padding)
    yield _archive_end(written)
