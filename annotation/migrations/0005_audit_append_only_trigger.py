"""Database-level append-only audit log (PostgreSQL).

AuditEvent.save/delete refuse too; the trigger also stops raw SQL, bulk updates and the admin.
TRUNCATE stays possible on purpose: the test runner empties tables with it.
SQLite (the demo) relies on the model checks only.
"""

from __future__ import annotations

from django.db import migrations

TRIGGER = """
CREATE OR REPLACE FUNCTION mersv_refuse_audit_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER auditevent_append_only BEFORE UPDATE OR DELETE ON annotation_auditevent
  FOR EACH ROW EXECUTE FUNCTION mersv_refuse_audit_change();
"""


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(TRIGGER, params=None)  # no placeholders: % is plpgsql's


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "DROP TRIGGER IF EXISTS auditevent_append_only ON annotation_auditevent;"
        "DROP FUNCTION IF EXISTS mersv_refuse_audit_change();"
    )


class Migration(migrations.Migration):
    dependencies = [("annotation", "0004_audit_event_login_throttle")]
    operations = [migrations.RunPython(forwards, backwards)]
