#!/bin/bash
# Backup hooks for every database on this server, run inside the postgres container by govcloud.
#   pg-backup.sh dump DB     custom-format dump on stdout; facts of the very same snapshot are
#                            written to /tmp/govcloud-facts-DB.json (read them with `facts-of-dump`)
#   pg-backup.sh facts DB    facts (per-table row count + content checksum) of the live database
#   pg-backup.sh facts-of-dump DB   the facts saved by the last dump of DB
#   pg-backup.sh schema DB   the migrations applied (schema_migrations, in order) as a JSON list; null without one
#   pg-backup.sh schema-of-dump DB  the same, of the snapshot the last dump of DB was taken from
#   pg-backup.sh restore DB [TARGET]  dump on stdin restored into TARGET (default DB), owned by DB's role
set -euo pipefail
export PATH=/usr/lib/postgresql/15/bin:$PATH
PORT=${GOVCLOUD_PORT_PG:-5432}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres)

facts_sql() {
  # one JSON object: {"table": {"rows": N, "md5": "..."}} over every user table, in a stable order
  cat <<'SQL'
CREATE OR REPLACE FUNCTION pg_temp.govcloud_facts() RETURNS json LANGUAGE plpgsql AS $f$
DECLARE r record; result jsonb := '{}'; n bigint; h text;
BEGIN
  FOR r IN SELECT schemaname, tablename FROM pg_tables
           WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2 LOOP
    EXECUTE format('SELECT count(*), coalesce(md5(string_agg(md5(t::text), '''' ORDER BY md5(t::text))), '''') FROM %I.%I t',
                   r.schemaname, r.tablename) INTO n, h;
    result := result || jsonb_build_object(r.schemaname || '.' || r.tablename, jsonb_build_object('rows', n, 'md5', h));
  END LOOP;
  RETURN result::json;
END $f$;
SELECT pg_temp.govcloud_facts();
SQL
}

schema_sql() {
  # the schema version: every migration applied (govcloud_common.db.migrate's table), in name order
  cat <<'SQL'
CREATE OR REPLACE FUNCTION pg_temp.govcloud_schema() RETURNS json LANGUAGE plpgsql AS $f$
DECLARE result json;
BEGIN
  IF to_regclass('schema_migrations') IS NULL THEN RETURN 'null'::json; END IF;
  EXECUTE 'SELECT coalesce(json_agg(name ORDER BY name), ''[]''::json) FROM schema_migrations' INTO result;
  RETURN result;
END $f$;
SELECT pg_temp.govcloud_schema();
SQL
}

cmd=${1:?usage: pg-backup.sh dump|facts|facts-of-dump|schema|schema-of-dump|restore|drop DB}
db=${2:?database name required}
case "$cmd" in
  dump)
    out=/tmp/govcloud-facts-$db.json
    rm -f "$out" "/tmp/govcloud-schema-$db.json"
    # hold one REPEATABLE READ transaction open: its exported snapshot is what pg_dump dumps and
    # what the facts describe, so a restore can be verified exactly even while writes go on
    coproc SESSION { "${PSQL[@]}" -d "$db"; }
    exec 3>&"${SESSION[1]}" 4<&"${SESSION[0]}"  # coproc fds are not inherited by pipelines; these are
    eval "exec ${SESSION[1]}>&- ${SESSION[0]}<&-"  # keep one copy only, so closing 3 ends the session
    echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot();" >&3
    read -r snapshot <&4
    pg_dump -h /tmp -p "$PORT" -U postgres -d "$db" --snapshot="$snapshot" -Fc -Z 1 --no-owner
    facts_sql > "/tmp/govcloud-facts-$db.sql"
    echo "\\i /tmp/govcloud-facts-$db.sql" >&3
    read -r facts <&4
    schema_sql > "/tmp/govcloud-schema-$db.sql"
    echo "\\i /tmp/govcloud-schema-$db.sql" >&3
    read -r schema <&4
    echo "COMMIT;" >&3
    exec 3>&- 4<&-
    wait "$SESSION_PID" 2>/dev/null || true
    [ -n "$facts" ] || { echo "pg-backup.sh: no facts for $db" >&2; exit 1; }
    [ -n "$schema" ] || { echo "pg-backup.sh: no schema version for $db" >&2; exit 1; }
    printf '%s\n' "$facts" > "$out"
    printf '%s\n' "$schema" > "/tmp/govcloud-schema-$db.json"
    ;;
  facts)
    facts_sql | "${PSQL[@]}" -d "$db"
    ;;
  facts-of-dump)
    cat "/tmp/govcloud-facts-$db.json"
    ;;
  schema)
    schema_sql | "${PSQL[@]}" -d "$db"
    ;;
  schema-of-dump)
    cat "/tmp/govcloud-schema-$db.json"
    ;;
  restore)
    target=${3:-$db}
    "${PSQL[@]}" -d postgres -v t="$target" -v owner="$db" <<'SQL'
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :'t' AND pid <> pg_backend_pid();
DROP DATABASE IF EXISTS :"t";
CREATE DATABASE :"t" OWNER :"owner";
SQL
    pg_restore -h /tmp -p "$PORT" -U postgres -d "$target" --no-owner --role="$db" --exit-on-error
    ;;
  drop)
    "${PSQL[@]}" -d postgres -v t="$db" <<'SQL'
DROP DATABASE IF EXISTS :"t" WITH (FORCE);
SQL
    ;;
  *) echo "pg-backup.sh: unknown command $cmd" >&2; exit 2 ;;
esac
