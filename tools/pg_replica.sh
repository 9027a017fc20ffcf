#!/usr/bin/env bash
# A streaming replica of the PostgreSQL primary on 127.0.0.1:5432, on another loopback port.
#
#   tools/pg_replica.sh [PORT] [DIR]      (default port 5433, DIR "${TMPDIR:-/tmp}/fhirhub-replica-PORT")
#   tools/pg_replica.sh stop [PORT] [DIR]  stops it and drops its replication slot
#
# Idempotent: lets the primary accept replication connections from 127.0.0.1
# (a pg_hba.conf line, then a reload; wal_level=replica and max_wal_senders are
# PostgreSQL's defaults and are checked), copies it with `pg_basebackup -R`
# (which writes standby.signal and primary_conninfo) and starts it. A replica
# already answering on PORT is left alone. A stopped one is copied afresh: the
# primary may have recycled the WAL it would need to catch up. The copy streams
# through a replication slot, so a busy primary keeps the WAL its replica has not
# replayed yet; `stop` drops the slot, so a replica that is gone holds no WAL back.
# Prints the replica's port. Run as root or as the postgres user.
set -euo pipefail

STOP=""
if [ "${1:-}" = stop ]; then
  STOP=1
  shift
fi

PRIMARY_HOST=127.0.0.1
PRIMARY_PORT="${HUB_PRIMARY_PORT:-5432}"
PORT="${1:-5433}"
DIR="${2:-${TMPDIR:-/tmp}/fhirhub-replica-${PORT}}"

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}
psql_primary() {
  psql -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -d postgres -Atqc "$1"
}

SLOT="fhirhub_replica_${PORT}"

BIN="$(pg_config --bindir 2>/dev/null || true)"
if [ ! -x "$BIN/pg_ctl" ]; then
  BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
fi
[ -x "$BIN/pg_ctl" ] || { echo "pg_ctl not found" >&2; exit 1; }

if [ -n "$STOP" ]; then
  if [ -f "$DIR/postmaster.pid" ]; then
    as_postgres "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null || true
  fi
  psql_primary "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                WHERE slot_name = '$SLOT' AND NOT active" >/dev/null
  exit 0
fi

# 1. The primary: replication allowed from loopback.
if [ "$(psql_primary 'SHOW wal_level')" = minimal ]; then
  echo "the primary runs with wal_level=minimal; set wal_level=replica and restart it" >&2
  exit 1
fi
if [ "$(psql_primary 'SHOW max_wal_senders')" -lt 2 ]; then
  echo "the primary's max_wal_senders is below 2; raise it and restart it" >&2
  exit 1
fi
HBA="$(psql_primary 'SHOW hba_file')"
if ! grep -Eq "^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust" "$HBA"; then
  echo "host replication all 127.0.0.1/32 trust" >>"$HBA"
  psql_primary "SELECT pg_reload_conf()" >/dev/null
fi

# 2. Already running?
if pg_isready -h 127.0.0.1 -p "$PORT" -q 2>/dev/null; then
  if [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atqc 'SELECT pg_is_in_recovery()')" != t ]; then
    echo "port $PORT answers but is not a standby" >&2
    exit 1
  fi
  # A standby that streams is reused; one that lost its place is copied afresh below.
  if [ "$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atqc \
    'SELECT status FROM pg_stat_wal_receiver')" = streaming ]; then
    echo "$PORT"
    exit 0
  fi
fi

# 3. A fresh base backup through the replica's own slot, then start it.
if [ -f "$DIR/postmaster.pid" ]; then
  as_postgres "$BIN/pg_ctl" -D "$DIR" -m immediate -w stop >/dev/null 2>&1 || true
fi
psql_primary "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
              WHERE slot_name = '$SLOT' AND NOT active" >/dev/null
rm -rf "$DIR"
mkdir -p "$DIR"
chown postgres:postgres "$DIR" 2>/dev/null || true
chmod 700 "$DIR"
as_postgres pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -D "$DIR" \
  -R -X stream -c fast -C -S "$SLOT"
# Debian keeps the configuration outside the data directory, so the copy has none.
if [ ! -f "$DIR/postgresql.conf" ]; then
  printf "hot_standby = on\n" | as_postgres tee "$DIR/postgresql.conf" >/dev/null
fi
if [ ! -f "$DIR/pg_hba.conf" ]; then
  printf "local all all trust\nhost all all 127.0.0.1/32 trust\n" |
    as_postgres tee "$DIR/pg_hba.conf" >/dev/null
fi
[ -f "$DIR/pg_ident.conf" ] || as_postgres touch "$DIR/pg_ident.conf"
as_postgres "$BIN/pg_ctl" -D "$DIR" -l "$DIR/replica.log" -w -t 120 \
  -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='$DIR'" \
  start >/dev/null
echo "$PORT"
