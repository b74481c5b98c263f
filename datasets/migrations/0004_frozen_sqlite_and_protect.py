"""Frozen versions on every path: SQLite triggers like PostgreSQL's (0002), and the builder's
account protected; per-version clip pseudonyms in exports.

On SQLite (the embedded default of `make demo`) the same rules as migration 0002: UPDATE or
DELETE of a frozen version, and INSERT, UPDATE or DELETE of a frozen version's clips, votes and
inner splits, abort. A version's own build still writes its rows, then marks it frozen.
created_by becomes PROTECT: SET_NULL rewrote a frozen row when the account was deleted (a 500
on PostgreSQL, where the trigger refuses it; silently on SQLite). pseudonymous_clip_ids is
False for the versions that exist (their exports name clips by the platform's ids, and must
rebuild to their content hash) and True by default for new ones; adding a column updates no
row, so the triggers have nothing to refuse.

SQLite drops a table's triggers when Django rebuilds the table (an AlterField there copies it
into a new one): a later migration that rebuilds one of these tables must create the triggers
again. tests/datasets/test_frozen_guards.py checks that every trigger exists after `migrate`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import migrations, models

CHILD_TABLES = ("datasets_datasetclip", "datasets_datasetrating", "datasets_datasetinnersplit")
VERSION_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS datasetversion_frozen_update
BEFORE UPDATE ON datasets_datasetversion FOR EACH ROW WHEN OLD.frozen
BEGIN SELECT RAISE(ABORT, 'a frozen dataset version cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS datasetversion_frozen_delete
BEFORE DELETE ON datasets_datasetversion FOR EACH ROW WHEN OLD.frozen
BEGIN SELECT RAISE(ABORT, 'a frozen dataset version cannot be deleted'); END;
"""
CHILD_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS {table}_frozen_insert
BEFORE INSERT ON {table} FOR EACH ROW
WHEN EXISTS (SELECT 1 FROM datasets_datasetversion v WHERE v.id = NEW.version_id AND v.frozen)
BEGIN SELECT RAISE(ABORT, 'rows cannot be added to a frozen dataset version'); END;
CREATE TRIGGER IF NOT EXISTS {table}_frozen_update
BEFORE UPDATE ON {table} FOR EACH ROW
WHEN EXISTS (SELECT 1 FROM datasets_datasetversion v
             WHERE v.id IN (OLD.version_id, NEW.version_id) AND v.frozen)
BEGIN SELECT RAISE(ABORT, 'rows of a frozen dataset version cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS {table}_frozen_delete
BEFORE DELETE ON {table} FOR EACH ROW
WHEN EXISTS (SELECT 1 FROM datasets_datasetversion v WHERE v.id = OLD.version_id AND v.frozen)
BEGIN SELECT RAISE(ABORT, 'rows of a frozen dataset version cannot be deleted'); END;
"""
# The names of every trigger above (the test and `backwards` read them).
TRIGGER_NAMES = (
    "datasetversion_frozen_update",
    "datasetversion_frozen_delete",
    *(f"{table}_frozen_{op}" for table in CHILD_TABLES for op in ("insert", "update", "delete")),
)


def _statements(sql: str) -> list[str]:
    # Each trigger ends with "END;"; sqlite3 runs one statement per execute().
    return [part.strip() + " END;" for part in sql.split("END;") if part.strip()]


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    sql = VERSION_TRIGGERS + "".join(CHILD_TRIGGERS.format(table=t) for t in CHILD_TABLES)
    for statement in _statements(sql):
        schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    for name in TRIGGER_NAMES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name};", params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("datasets", "0003_training_sets"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]
    operations = [
        # First the field (on SQLite an AlterField may rebuild the table), then the triggers.
        migrations.AlterField(
            model_name="datasetversion",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=models.deletion.PROTECT,
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="datasetversion",
            name="pseudonymous_clip_ids",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AlterField(
            model_name="datasetversion",
            name="pseudonymous_clip_ids",
            field=models.BooleanField(default=True, editable=False),
        ),
        migrations.RunPython(forwards, backwards),
    ]
