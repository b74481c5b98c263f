#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer; start them with this
# machine kind's own commands where they stopped, else say exactly what is missing.
set -u
pg_ok() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_ok() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

if ! pg_ok; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 20); do pg_ok && break; sleep 0.5; done
  fi
fi
if ! redis_ok; then
  if command -v redis-server >/dev/null; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 20); do redis_ok && break; sleep 0.5; done
  fi
fi
missing=0
pg_ok || { echo "PostgreSQL is not answering on 127.0.0.1:5432 (trust auth, user postgres): start it or set TEST_DATABASE_URL"; missing=1; }
redis_ok || { echo "Redis is not answering on 127.0.0.1:6379: start redis-server or set TEST_BROKER_URL"; missing=1; }
exit $missing
