#!/usr/bin/env bash
# Installs (if needed) and starts Debian's PostgreSQL on 127.0.0.1:5432, with a
# `doorstep` superuser for tests, and prints the admin URL tests use to create
# their own databases. Run as root (CI and these dev machines are).
# TLS: the cluster serves a certificate for localhost and 127.0.0.1 issued by a test CA
# generated here once; its certificate is $DOORSTEP_PG_TLS_DIR/ca.crt (tests verify against it).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
tls=${DOORSTEP_PG_TLS_DIR:-/var/lib/postgresql/doorstep-tls}
if [ ! -s "$tls/server.crt" ]; then
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Doorstep test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 3650 \
    -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
  chown -R postgres:postgres "$tls"
  chmod 600 "$tls/server.key" "$tls/ca.key"
  chmod 644 "$tls/ca.crt" "$tls/server.crt"
  chmod 755 "$tls"
fi
conf=/etc/postgresql/$version/main/postgresql.conf
sed -i -e "s|^#\?ssl = .*|ssl = on|" -e "s|^#\?ssl_cert_file = .*|ssl_cert_file = '$tls/server.crt'|" \
  -e "s|^#\?ssl_key_file = .*|ssl_key_file = '$tls/server.key'|" "$conf"
pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main reload 2>/dev/null || true
# A first start (initdb just ran, the machine busy compiling) can take a while.
ready=no
for _ in $(seq 600); do
  if su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1; then ready=yes; break; fi
  sleep 0.2
done
[ "$ready" = yes ] || { echo "PostgreSQL did not start within 120 s" >&2; exit 1; }
su postgres -c "psql -qtAc \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doorstep') THEN CREATE ROLE doorstep LOGIN SUPERUSER PASSWORD 'doorstep'; END IF; END \\\$\\\$;\"" >/dev/null
echo "postgres://doorstep:doorstep@127.0.0.1:5432/postgres"
