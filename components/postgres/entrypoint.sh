#!/bin/bash
# PostgreSQL for a govcloud stack. On every start: initialise the cluster if empty, then reconcile one
# role and database per consumer (GOVCLOUD_DATABASES="portal payment ..." with passwords in
# GOVCLOUD_DBPASS_<NAME>), with TCP closed; only then open the TCP port, so "port open" means "ready".
set -euo pipefail
export PATH=/usr/lib/postgresql/15/bin:$PATH
PGDATA=${PGDATA:-/var/lib/govcloud/pgdata/15}
SOCK=/tmp
PORT=${GOVCLOUD_PORT_PG:-5432}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  initdb -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  echo '{"msg":"initialised a new cluster","component":"postgres"}'
fi

# the image's OS user (app) is the database superuser over the socket; everything else uses passwords
cat > "$PGDATA/pg_hba.conf" <<'HBA'
local all postgres peer map=govcloud
local all all scram-sha-256
host all all 0.0.0.0/0 scram-sha-256
host all all ::/0 scram-sha-256
HBA
echo "govcloud $(id -un) postgres" > "$PGDATA/pg_ident.conf"

pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses='' -k $SOCK -p $PORT" start
for db in ${GOVCLOUD_DATABASES:-}; do
  var="GOVCLOUD_DBPASS_${db^^}"
  pass="${!var:?$var is not set}"
  # the password travels on stdin to psql, never on a command line
  psql -v ON_ERROR_STOP=1 -q -h "$SOCK" -p "$PORT" -U postgres -d postgres -v db="$db" -v pass="$pass" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'db')\gexec
ALTER ROLE :"db" WITH LOGIN PASSWORD :'pass';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
SQL
done
pg_ctl -D "$PGDATA" -w -s -m fast stop
echo '{"msg":"roles reconciled, opening TCP","component":"postgres"}'
exec postgres -D "$PGDATA" -c listen_addresses="${GOVCLOUD_BIND:-127.0.0.1}" -c port="$PORT" \
  -c unix_socket_directories="$SOCK" -c max_connections=200 -c shared_buffers=128MB
