"""A frozen dataset version cannot change on any path: ORM bulk inserts, the admin's deletion of
the account that built it, raw SQL on SQLite (the embedded default), and on PostgreSQL even
the app's own database role (docker/db_role.sql) cannot TRUNCATE or switch the triggers off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client

from annotation.models import AuditEvent
from datasets.models import DatasetRating, DatasetVersion, FrozenError
from tests.conftest import ROOT

ROLE_SQL = ROOT / "docker" / "db_role.sql"


def _frozen_version(owner) -> DatasetVersion:
    return DatasetVersion.objects.create(
        name=f"frozen-{uuid.uuid4().hex[:6]}", created_by=owner, frozen=True,
        status=DatasetVersion.Status.READY, pseudonym_salt="s", content_hash="0" * 64,
    )  # fmt: skip


@pytest.mark.django_db
def test_bulk_create_into_a_frozen_version_is_refused(make_user) -> None:
    version = _frozen_version(make_user("curator"))
    row = DatasetRating(version=version, clip_external_id="c1", rater_pseudonym="r1", grade="A")
    with pytest.raises(FrozenError, match="frozen dataset version"):
        DatasetRating.objects.bulk_create([row])
    assert not DatasetRating.objects.filter(version=version).exists()


@pytest.mark.django_db
def test_the_admin_refuses_to_delete_the_account_that_built_a_frozen_version(make_user) -> None:
    builder = make_user("curator")
    version = _frozen_version(builder)
    admin = Client()
    admin.force_login(make_user("admin"))
    url = f"/admin/auth/user/{builder.pk}/delete/"
    page = admin.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    # The admin's own refusal page: the frozen version may not go, so neither may its builder.
    assert "<title>Cannot delete user" in text and "dataset version" in text
    assert admin.post(url, {"post": "yes"}).status_code == 200  # the same page, nothing deleted
    version.refresh_from_db()
    assert version.created_by_id == builder.pk
    assert type(builder).objects.filter(pk=builder.pk).exists()


@pytest.fixture
def app_role(db) -> str:
    """docker/db_role.sql run as the owner, for a role of this test's own name; the test's
    transaction rolls the role and its grants back."""
    if connection.vendor != "postgresql":
        pytest.skip("the database role is PostgreSQL's")
    name = f"mersv_app_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(ROLE_SQL.read_text().replace("mersv_app", name))
    return name


def _as_role(role: str, sql: str, params: list[object] | None = None) -> None:
    """Run `sql` as `role` inside a savepoint, so that a refusal leaves the test usable."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        cursor.execute(sql, params)


@pytest.mark.parametrize(
    "sql",
    [
        "TRUNCATE datasets_datasetrating",
        "TRUNCATE datasets_datasetversion CASCADE",
        "ALTER TABLE datasets_datasetrating DISABLE TRIGGER ALL",
        "ALTER TABLE datasets_datasetversion DISABLE TRIGGER datasetversion_frozen",
        "DROP TRIGGER datasetversion_frozen ON datasets_datasetversion",
        "ALTER TABLE datasets_datasetversion DROP COLUMN frozen",
        "SET session_replication_role = replica",
        "UPDATE annotation_auditevent SET action = 'x'",
        "DELETE FROM annotation_auditevent",
        "CREATE TABLE mersv_scratch (x int)",
    ],
)
def test_the_app_role_cannot_truncate_alter_or_switch_off_the_triggers(
    app_role: str, sql: str
) -> None:
    with pytest.raises(DatabaseError, match=r"permission denied|must be owner|superuser"):
        _as_role(app_role, sql)


def test_the_app_role_can_do_the_apps_normal_work(app_role: str, make_user) -> None:
    version = _frozen_version(make_user("curator"))
    _as_role(app_role, "SELECT count(*) FROM datasets_datasetversion")
    _as_role(
        app_role,
        "INSERT INTO annotation_auditevent (username, action, object_type, object_id, detail, "
        "created_at) VALUES ('x', 'login_ok', '', '', '{}', now())",
    )
    _as_role(app_role, "INSERT INTO annotation_patient (code, created_at) VALUES ('P-r', now())")
    _as_role(app_role, "UPDATE annotation_patient SET code = 'P-s' WHERE code = 'P-r'")
    _as_role(app_role, "DELETE FROM annotation_patient WHERE code = 'P-s'")
    assert AuditEvent.objects.filter(username="x").count() == 1
    # The rows of a frozen version stay refused by the triggers, for this role as for any.
    with pytest.raises(DatabaseError, match="frozen"):
        _as_role(app_role, "DELETE FROM datasets_datasetversion WHERE id = %s", [version.pk])


SQLITE_SCRIPT = r"""
import json, django
django.setup()
from django.contrib.auth.models import User
from django.db import connection, transaction, DatabaseError
from django.db.models import ProtectedError
from datasets.models import DatasetRating, DatasetVersion, FrozenError
import importlib, pathlib
import datasets.migrations as migrations
found = next(pathlib.Path(migrations.__file__).parent.glob("*_frozen_sqlite_and_protect.py"))
names = importlib.import_module(f"datasets.migrations.{found.stem}").TRIGGER_NAMES

builder = User.objects.create(username="builder")
version = DatasetVersion.objects.create(
    name="v1", created_by=builder, frozen=True, status="ready", pseudonym_salt="s")
open_version = DatasetVersion.objects.create(name="v2", created_by=None, pseudonym_salt="s")
DatasetRating.objects.create(version=open_version, clip_external_id="c", rater_pseudonym="r",
                             grade="A")
results = {}
attempts = {
    "update version": f"UPDATE datasets_datasetversion SET name = 'x' WHERE id = {version.pk}",
    "unfreeze version": f"UPDATE datasets_datasetversion SET frozen = 0 WHERE id = {version.pk}",
    "delete version": f"DELETE FROM datasets_datasetversion WHERE id = {version.pk}",
    "insert rating": "INSERT INTO datasets_datasetrating (version_id, clip_external_id, "
                     f"rater_pseudonym, grade) VALUES ({version.pk}, 'c', 'r', 'A')",
    "move a rating in": f"UPDATE datasets_datasetrating SET version_id = {version.pk}",
    "null the builder": f"UPDATE datasets_datasetversion SET created_by_id = NULL "
                        f"WHERE id = {version.pk}",
}
for what, sql in attempts.items():
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
        results[what] = "done"
    except DatabaseError as exc:
        results[what] = f"refused: {exc}"
try:
    DatasetRating.objects.bulk_create([DatasetRating(
        version=version, clip_external_id="c", rater_pseudonym="r", grade="A")])
    results["bulk_create"] = "done"
except FrozenError as exc:
    results["bulk_create"] = f"refused: {exc}"
try:
    builder.delete()
    results["delete builder"] = "done"
except ProtectedError as exc:
    results["delete builder"] = "refused: protected"
version.refresh_from_db()
results["builder kept"] = version.created_by_id == builder.pk
results["ratings of v1"] = DatasetRating.objects.filter(version=version).count()
with connection.cursor() as cursor:
    cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    present = {row[0] for row in cursor.fetchall()}
results["missing triggers"] = sorted(set(names) - present)
results["open version still writable"] = DatasetRating.objects.filter(
    version=open_version).update(grade="B") == 1
print("RESULTS " + json.dumps(results))
"""


def test_on_sqlite_frozen_versions_refuse_raw_sql_bulk_inserts_and_builder_deletion(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'frozen.sqlite3'}",
        "MERSV_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
    }
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 300}
    migrated = subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], **run)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    script = subprocess.run([sys.executable, "-c", SQLITE_SCRIPT], **run)
    assert script.returncode == 0, script.stderr[-2000:]
    line = next(x for x in script.stdout.splitlines() if x.startswith("RESULTS "))
    results = json.loads(line.removeprefix("RESULTS "))
    for what in (
        "update version", "unfreeze version", "delete version", "insert rating",
        "move a rating in", "null the builder", "bulk_create", "delete builder",
    ):  # fmt: skip
        assert results[what].startswith("refused"), (what, results[what])
    assert "frozen dataset version" in results["insert rating"]
    assert results["builder kept"] is True
    assert results["ratings of v1"] == 0
    assert results["missing triggers"] == []
    assert results["open version still writable"] is True
