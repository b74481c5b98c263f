-- The database role the MERSV app runs as in production: it reads and writes rows, and nothing
-- more. Migrations run as the owner of the tables (the role that ran `manage.py migrate`, e.g.
-- the compose file's POSTGRES_USER); the web server and the workers connect as mersv_app.
--
-- As the app role, no code path (a bug, an injected statement, a stolen DATABASE_URL) can
-- TRUNCATE a table, ALTER or DROP one, disable the frozen-version and audit-log triggers
-- (ALTER TABLE ... DISABLE TRIGGER needs the owner; SET session_replication_role needs a
-- superuser), create objects, or change or delete audit events.
--
-- Run it as the owner, in the app's database, after every `migrate` (it is idempotent):
--   psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f docker/db_role.sql
--   psql "$OWNER_DATABASE_URL" -c "ALTER ROLE mersv_app PASSWORD 'a long random secret'"
-- then give the app  DATABASE_URL=postgres://mersv_app:SECRET@db:5432/mersv
-- and keep the owner's URL for `manage.py migrate` only.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mersv_app') THEN
    CREATE ROLE mersv_app LOGIN;
  END IF;
END $$;
ALTER ROLE mersv_app NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;

DO $$
BEGIN
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO mersv_app', current_database());
END $$;

-- Use the schema, create nothing in it (PostgreSQL before 15 lets every role create there).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM mersv_app;
GRANT USAGE ON SCHEMA public TO mersv_app;

-- Rows only: no TRUNCATE, REFERENCES or TRIGGER privilege; ownership stays with the owner.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM mersv_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mersv_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO mersv_app;
-- The audit log is append-only (its trigger refuses UPDATE and DELETE too).
REVOKE UPDATE, DELETE ON annotation_auditevent FROM mersv_app;

-- Tables and sequences that later migrations (run by this owner) create get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO mersv_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO mersv_app;
