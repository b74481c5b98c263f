"""A training run's checkpoint folder, kept in the ``runs`` storage so that any worker resumes it.

Local storage (the embedded default): the folder ``run.checkpoint_dir`` is used in place and
nothing is copied. Object storage: a worker trains in ``TRAINING_RUNS_ROOT/<run folder>`` on
its own disk; before training it pulls what the bucket holds under ``<run folder>/`` (the
checkpoints another worker wrote), and after every epoch and fold it pushes the files that
changed (``last.pt`` after each epoch, ``model.pt`` and the features after each fold). A run
whose worker died therefore resumes on another host from its last epoch.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File

from annotation.storage import CHUNK_BYTES, RUNS, is_local, storage_for


class CheckpointFolder:
    """The local folder of one run's checkpoints and its copy in the runs storage."""

    def __init__(self, checkpoint_dir: str) -> None:
        self.remote = not is_local(RUNS)
        if self.remote:
            self.prefix = Path(checkpoint_dir).name  # "<run id>-<random>"
            self.local = Path(settings.TRAINING_RUNS_ROOT) / self.prefix
        else:
            self.prefix = ""
            self.local = Path(checkpoint_dir)
        self._pushed: dict[str, tuple[int, int]] = {}

    def _stored_names(self, folder: str) -> list[str]:
        storage = storage_for(RUNS)
        try:
            folders, files = storage.listdir(folder)
        except FileNotFoundError:
            return []
        names = [f"{folder}/{name}" for name in files]
        for sub in folders:
            names += self._stored_names(f"{folder}/{sub}")
        return names

    def pull(self) -> int:
        """Fetch the stored files this host lacks (or holds at another size); their count."""
        if not self.remote:
            return 0
        storage = storage_for(RUNS)
        fetched = 0
        for name in self._stored_names(self.prefix):
            relative = name[len(self.prefix) + 1 :]
            target = self.local.joinpath(*relative.split("/"))
            if target.is_file() and target.stat().st_size == storage.size(name):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(handle, "wb") as out, storage.open(name, "rb") as src:
                    while chunk := src.read(CHUNK_BYTES):
                        out.write(chunk)
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise
            stat = target.stat()
            self._pushed[relative] = (stat.st_size, stat.st_mtime_ns)
            fetched += 1
        return fetched

    def push(self) -> int:
        """Write the files changed since the last push or pull to the storage; their count."""
        if not self.remote or not self.local.is_dir():
            return 0
        storage = storage_for(RUNS)
        written = 0
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            if path.name.startswith("."):  # a checkpoint being written (temporary file)
                continue
            relative = path.relative_to(self.local).as_posix()
            stat = path.stat()
            key = (stat.st_size, stat.st_mtime_ns)
            if self._pushed.get(relative) == key:
                continue
            with path.open("rb") as f:
                storage.save(f"{self.prefix}/{relative}", File(f, name=path.name))
            self._pushed[relative] = key
            written += 1
        return written
