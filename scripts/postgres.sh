#!/usr/bin/env bash
# Installs (if needed) and starts Debian's PostgreSQL on 127.0.0.1:5432, with a
# `doorstep` superuser for tests, and prints the admin URL tests use to create
# their own databases. Run as root (CI and these dev machines are).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || true
# A first start (initdb just ran, the machine busy compiling) can take a while.
ready=no
for _ in $(seq 600); do
  if su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1; then ready=yes; break; fi
  sleep 0.2
done
[ "$ready" = yes ] || { echo "PostgreSQL did not start within 120 s" >&2; exit 1; }
su postgres -c "psql -qtAc \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doorstep') THEN CREATE ROLE doorstep LOGIN SUPERUSER PASSWORD 'doorstep'; END IF; END \\\$\\\$;\"" >/dev/null
echo "postgres://doorstep:doorstep@127.0.0.1:5432/postgres"
