#!/usr/bin/env bash
# Back up the platform: the database (pg_dump -Fc, or SQLite's online .backup), MEDIA_ROOT and
# EXPORT_ROOT (tar), with a manifest of SHA-256 sums. Run with the same environment as the web
# process (DATABASE_URL, MERSV_VAR_DIR, MERSV_MEDIA_ROOT, MERSV_EXPORT_ROOT):
#
#     docker/backup.sh /backups/mersv-$(date +%F)
#
# The folder appears complete or not at all (written as OUT.partial, renamed at the end).
# Restore with docker/restore.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: docker/backup.sh OUT_DIR}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
[ -e "$out" ] && { echo "$out exists: choose a new folder for each backup"; exit 1; }

# The paths and the database as the settings resolve them (one source of truth).
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

partial="$out.partial"
rm -rf "$partial"
mkdir -p "$partial"
case "$engine" in
  postgresql) pg_dump --format=custom --no-owner --dbname="$DATABASE_URL" --file="$partial/db.dump" ;;
  sqlite3) sqlite3 "$db_name" ".backup '$partial/db.sqlite3'" ;;  # consistent while in use
  *) echo "unsupported database engine: $engine"; exit 1 ;;
esac
# Media first, exports after: an export only names files, so a slightly newer media tar is safe.
for part in media:"$media_root" exports:"$export_root"; do
  name=${part%%:*} dir=${part#*:}
  mkdir -p "$dir"
  tar --create --gzip --file="$partial/$name.tar.gz" --directory="$dir" .
done
{
  echo "created $(date -u +%FT%TZ)"
  echo "engine $engine"
} > "$partial/INFO"
(cd "$partial" && sha256sum -- * > MANIFEST.sha256)
mv "$partial" "$out"
echo "backup written to $out:"
cat "$out/MANIFEST.sha256"
