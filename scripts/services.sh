#!/usr/bin/env bash
# Installs (from Debian's packages, when missing), configures and starts what the tests talk to:
#   PostgreSQL  127.0.0.1:5432, user postgres, database `test`, trust auth on loopback only
#   Redis       127.0.0.1:6379, no persistence
# The machines no longer start either before a session or a CI run, so this must work on a bare
# machine and be a no-op when both already run. Fails (exit 1) when a service cannot be made
# reachable, so that a broken set-up shows here rather than as scattered test failures.
set -euo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"

need=()
command -v pg_ctlcluster >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
  || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ] && ! { up 5432 && up 6379; }; then
  echo "installing Debian packages: ${need[*]}"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi

if ! up 5432; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    $sudo_ pg_createcluster "$version" main >/dev/null
  fi
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # Trust on loopback only (the tests connect as postgres without a password); our lines go
  # first because pg_hba.conf is first-match. Idempotent thanks to the marker.
  if ! grep -q 'telemetry-gateway tests' "$hba"; then
    tmp=$(mktemp)
    {
      echo "# telemetry-gateway tests: trust on loopback"
      echo "host all all 127.0.0.1/32 trust"
      echo "host all all ::1/128 trust"
      cat "$hba"
    } >"$tmp"
    $sudo_ cp "$tmp" "$hba"
    rm -f "$tmp"
  fi
  echo "starting PostgreSQL $version"
  $sudo_ pg_ctlcluster --skip-systemctl-redirect "$version" main start \
    || $sudo_ pg_ctlcluster --skip-systemctl-redirect "$version" main restart
fi

if ! up 6379; then
  echo "starting Redis"
  $sudo_ mkdir -p /var/lib/redis /var/log/redis
  $sudo_ redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/telemetry-gateway.log
fi

for _ in $(seq 1 30); do up 5432 && up 6379 && break; sleep 1; done
ok=0
up 5432 || { echo "error: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; ok=1; }
up 6379 || { echo "error: Redis is not reachable on 127.0.0.1:6379" >&2; ok=1; }
[ $ok -eq 0 ] || exit 1

for _ in $(seq 1 30); do
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1" >/dev/null 2>&1 && break
  sleep 1
done
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE test"
fi
psql -h 127.0.0.1 -U postgres -d test -tAc "SELECT 1" >/dev/null \
  || { echo "error: cannot connect as postgres to database test on 127.0.0.1" >&2; exit 1; }
