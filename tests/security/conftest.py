"""Fixtures of the security tests: one user per role (and a second expert and curator, so that
every owned object exists once per owner), and one object of each kind per owner."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.annotation.grading.conftest import make_clip  # noqa: F401  (a fixture, used by `world`)
from tests.conftest import PASSWORD

ROLES = ("anonymous", "trainee", "expert", "curator", "admin")
# A valid MP4 start: uploads are sniffed by content, not by name.
MP4_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


@dataclass
class World:
    users: dict[str, Any]  # role -> user; "expert_other", "curator_other" own the "other" objects
    objects: dict[str, Any] = field(default_factory=dict)

    def user(self, role: str) -> Any:
        return None if role == "anonymous" else self.users[role]


README_BYTES = b"# test export\n"
MANIFEST_BYTES = f"{hashlib.sha256(README_BYTES).hexdigest()}  README.md\n".encode()


def export_write(version: Any) -> None:
    """A minimal export folder (a README and its manifest), enough to stream a download."""
    from datasets.services import export_dir_for

    folder = export_dir_for(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_bytes(README_BYTES)
    (folder / "MANIFEST.sha256").write_bytes(MANIFEST_BYTES)


def version_make(name: str, owner: Any) -> Any:
    """A frozen version whose content hash is its minimal export's (downloads are verified)."""
    from datasets.models import DatasetVersion

    version = DatasetVersion.objects.create(
        name=name, created_by=owner, status=DatasetVersion.Status.READY, frozen=True,
        n_folds=3, pseudonym_salt="s", content_hash=hashlib.sha256(MANIFEST_BYTES).hexdigest(),
    )  # fmt: skip
    export_write(version)
    return version


@pytest.fixture
def world(make_user, make_clip, settings, tmp_path) -> World:  # noqa: F811
    from modeling.models import ExperimentGrid, TrainingRun
    from tests.grading_support import grade_offered

    settings.EXPORT_ROOT = tmp_path / "exports"
    users = {
        role: make_user(role, username=f"sec-{role}")
        for role in ("trainee", "expert", "curator", "admin")
    }
    users["expert_other"] = make_user("expert", username="sec-expert2")
    users["curator_other"] = make_user("curator", username="sec-curator2")
    w = World(users=users)
    clips = [make_clip() for _ in range(3)]
    w.objects["clip"] = clips[0]
    w.objects["clip_free"] = clips[2]  # nobody answered it: the one to grade
    for owner, clip in (("own", clips[0]), ("other", clips[1])):
        video = clip.video
        video.uploaded_by = users["curator" if owner == "own" else "curator_other"]
        video.save(update_fields=["uploaded_by"])
        source = Path(settings.MEDIA_ROOT) / video.file.name
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(MP4_BYTES)
        # Its first-frame preview (a source video's pixels: curators only).
        video.first_frame = f"previews/v{video.pk}-sec/frame0.png"
        frame = Path(settings.MEDIA_ROOT) / video.first_frame.name
        frame.parent.mkdir(parents=True, exist_ok=True)
        frame.write_bytes(b"\x89PNG\r\n\x1a\n")
        video.save(update_fields=["first_frame"])
        w.objects[f"video_{owner}"] = video
    w.objects["rating_own"] = grade_offered(users["expert"], clips[0], "B")
    w.objects["rating_other"] = grade_offered(users["expert_other"], clips[1], "C")
    for owner, user in (("own", users["curator"]), ("other", users["curator_other"])):
        version = version_make(f"sec-{owner}", user)
        w.objects[f"version_{owner}"] = version
        grid = ExperimentGrid.objects.create(
            version=version, name=f"grid-{owner}", backbones=["resnet"], losses=["emd"],
            epochs=1, created_by=user,
        )  # fmt: skip
        w.objects[f"grid_{owner}"] = grid
        w.objects[f"run_{owner}"] = TrainingRun.objects.create(
            version=version, name=f"run-{owner}", config={}, n_folds=3, created_by=user
        )
    return w


def media_path(clip: Any) -> str:
    root = Path(settings.MEDIA_ROOT)
    return str(Path(clip.filmstrip_file.path).relative_to(root))


def client_for(role: str, world: World, **kwargs: Any):
    from django.test import Client

    client = Client(**kwargs)
    user = world.user(role)
    if user is not None:
        client.force_login(user)
    return client


__all__ = ["MP4_BYTES", "PASSWORD", "ROLES", "World", "client_for", "media_path", "world"]


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings) -> None:
    # Every test here makes several users; the real hasher's cost is not what is tested.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
