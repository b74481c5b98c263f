#!/usr/bin/env bash
# Restore a backup made by docker/backup.sh into the database and folders the environment
# names (DATABASE_URL, MERSV_VAR_DIR, MERSV_MEDIA_ROOT, MERSV_EXPORT_ROOT). Stop the web and
# worker processes first. The PostgreSQL database must exist and be empty (createdb NAME); the
# media and export folders must be empty or missing. Checks the manifest before touching
# anything:
#
#     docker/restore.sh /backups/mersv-2026-01-31
set -euo pipefail
cd "$(dirname "$0")/.."
backup=${1:?usage: docker/restore.sh BACKUP_DIR}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
(cd "$backup" && sha256sum --check --quiet MANIFEST.sha256) \
  || { echo "$backup does not match its MANIFEST.sha256: not restoring"; exit 1; }

read -r engine db_name media_root export_root < <("$PYTHON" - <<'PY'
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from django.conf import settings
db = settings.DATABASES["default"]
print(db["ENGINE"].rsplit(".", 1)[1], db["NAME"], settings.MEDIA_ROOT, settings.EXPORT_ROOT)
PY
)
for dir in "$media_root" "$export_root"; do
  if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "$dir is not empty: restore into empty folders"; exit 1
  fi
done
case "$engine" in
  postgresql)
    [ -f "$backup/db.dump" ] || { echo "$backup holds no PostgreSQL dump"; exit 1; }
    pg_restore --no-owner --exit-on-error --single-transaction --dbname="$DATABASE_URL" "$backup/db.dump" ;;
  sqlite3)
    [ -f "$backup/db.sqlite3" ] || { echo "$backup holds no SQLite backup"; exit 1; }
    [ -e "$db_name" ] && { echo "$db_name exists: move it away first"; exit 1; }
    cp "$backup/db.sqlite3" "$db_name" ;;
  *) echo "unsupported database engine: $engine"; exit 1 ;;
esac
for part in media:"$media_root" exports:"$export_root"; do
  name=${part%%:*} dir=${part#*:}
  mkdir -p "$dir"
  tar --extract --gzip --file="$backup/$name.tar.gz" --directory="$dir" --no-same-owner
done
echo "restored $backup into $engine database $db_name, $media_root and $export_root"
