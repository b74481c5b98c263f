"""Database-level immutability of frozen dataset versions (PostgreSQL).

The models refuse changes too; the triggers also stop raw SQL, the admin's bulk actions and any
code path we did not think of. SQLite (the demo) relies on the model checks only.
"""

from __future__ import annotations

from django.db import migrations

VERSION_TRIGGER = """
CREATE OR REPLACE FUNCTION mersv_refuse_frozen_version() RETURNS trigger AS $$
BEGIN
  IF OLD.frozen THEN
    RAISE EXCEPTION 'dataset version % is frozen and cannot be changed', OLD.name
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER datasetversion_frozen BEFORE UPDATE OR DELETE ON datasets_datasetversion
  FOR EACH ROW EXECUTE FUNCTION mersv_refuse_frozen_version();

CREATE OR REPLACE FUNCTION mersv_refuse_frozen_child() RETURNS trigger AS $$
DECLARE version_id bigint;
BEGIN
  IF TG_OP = 'INSERT' THEN version_id := NEW.version_id; ELSE version_id := OLD.version_id; END IF;
  IF EXISTS (SELECT 1 FROM datasets_datasetversion v WHERE v.id = version_id AND v.frozen) THEN
    RAISE EXCEPTION 'rows of frozen dataset version % cannot be changed', version_id
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
"""
CHILD_TABLES = ("datasets_datasetclip", "datasets_datasetrating", "datasets_datasetinnersplit")


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(VERSION_TRIGGER, params=None)  # no placeholders: % is plpgsql's
    for table in CHILD_TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_frozen BEFORE INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION mersv_refuse_frozen_child();"
        )


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in CHILD_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_frozen ON {table};")
    schema_editor.execute(
        "DROP TRIGGER IF EXISTS datasetversion_frozen ON datasets_datasetversion;"
        "DROP FUNCTION IF EXISTS mersv_refuse_frozen_version();"
        "DROP FUNCTION IF EXISTS mersv_refuse_frozen_child();"
    )


class Migration(migrations.Migration):
    dependencies = [("datasets", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
