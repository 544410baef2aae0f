#!/usr/bin/env bash
# Starts PostgreSQL (127.0.0.1:5432, database `test`) and Redis (127.0.0.1:6379) when they are
# down. The machines this project runs on normally start both before a session.
set -uo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! up 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! up 6379 && command -v redis-server >/dev/null 2>&1; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
for i in $(seq 1 30); do up 5432 && up 6379 && break; sleep 1; done
up 5432 || echo "warning: PostgreSQL is not reachable on 127.0.0.1:5432 (its tests will fail)"
up 6379 || echo "warning: Redis is not reachable on 127.0.0.1:6379 (its tests will fail)"
if up 5432 && command -v psql >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null \
    | grep -q 1 || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null 2>&1 || true
fi
exit 0
