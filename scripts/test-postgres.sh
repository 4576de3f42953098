#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests and the history benchmark, on
# loopback only, on a fixed unusual port, with its own data directory (not
# Debian's default cluster, which is left alone).
#
#   scripts/test-postgres.sh start   creates the cluster if needed, starts it if
#                                    it is not running, creates the test role and
#                                    database, and prints the URL on stdout
#   scripts/test-postgres.sh stop    stops it (the data directory stays)
#   scripts/test-postgres.sh status  exits 0 when it is running
#   scripts/test-postgres.sh url     prints the URL
#   scripts/test-postgres.sh destroy stops it and removes the data directory
#
# Safe to run again: a running cluster is reused. Uses the server binaries of
# Debian's postgresql-15 package (scripts/install-deps.sh installs it). The
# server refuses to run as root, so as root everything runs as the
# `postgres` user.
#
# Environment (optional):
#   SLUICE_TEST_PG_PORT=15432                   the TCP port (127.0.0.1 only)
#   SLUICE_TEST_PG_DIR=/var/tmp/sluice-test-postgres-$PORT   the data directory
set -euo pipefail

port="${SLUICE_TEST_PG_PORT:-15432}"
dir="${SLUICE_TEST_PG_DIR:-/var/tmp/sluice-test-postgres-$port}"
role=sluice_test
password=sluice-test-password
database=sluice_test
url="postgres://$role:$password@127.0.0.1:$port/$database"

say() { printf 'test-postgres: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[[ "$port" =~ ^[0-9]+$ ]] && ((port >= 1024 && port <= 65535)) || die "SLUICE_TEST_PG_PORT must be 1024..65535"

bindir=""
for candidate in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
    bindir="$candidate"
    break
  fi
done

# Runs a command as the cluster's owner: `postgres` when we are root.
as_owner() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

need_server() {
  [[ -n "$bindir" ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql (install the postgresql package: scripts/install-deps.sh)"
  if ((EUID == 0)) && ! id postgres >/dev/null 2>&1; then
    die "no 'postgres' user (install the postgresql package: scripts/install-deps.sh)"
  fi
}

running() {
  [[ -n "$bindir" && -f "$dir/PG_VERSION" ]] || return 1
  as_owner "$bindir/pg_ctl" status -D "$dir" >/dev/null 2>&1
}

# psql as the cluster's superuser, through the Unix socket in the data
# directory (that directory is private to the owner, so the socket is too).
admin_psql() {
  as_owner psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d postgres "$@"
}

create_cluster() {
  say "creating a cluster in $dir"
  mkdir -p "$dir"
  ((EUID == 0)) && chown postgres:postgres "$dir"
  chmod 700 "$dir"
  as_owner "$bindir/initdb" -D "$dir" --auth-local=trust --auth-host=scram-sha-256 \
    --username=postgres --encoding=UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 ||
    { cat "$dir.initdb.log" >&2; die "initdb failed"; }
  rm -f "$dir.initdb.log"
  # Loopback only, the socket inside the data directory. Commits do not wait
  # for the WAL flush (as SQLite's WAL mode with synchronous=NORMAL, the
  # store's setting), but checkpoints still fsync, so the history benchmark
  # measures a durable server.
  as_owner tee -a "$dir/postgresql.conf" >/dev/null <<EOF

# sluice test cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 50
shared_buffers = 256MB
synchronous_commit = off
logging_collector = off
EOF
}

start() {
  need_server
  if running; then
    say "already running on 127.0.0.1:$port ($dir)"
  else
    [[ -f "$dir/PG_VERSION" ]] || create_cluster
    say "starting on 127.0.0.1:$port"
    as_owner "$bindir/pg_ctl" start -D "$dir" -l "$dir/server.log" -w -t 60 -s >/dev/null ||
      { tail -n 20 "$dir/server.log" >&2 || true; die "the server did not start (log: $dir/server.log)"; }
  fi
  # The role and its database, created once; the password is reset each time
  # so a cluster made by an older version of this script still matches.
  admin_psql <<EOF
SELECT 'CREATE ROLE $role LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role')
\\gexec
ALTER ROLE $role LOGIN PASSWORD '$password';
SELECT 'CREATE DATABASE $database OWNER $role' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$database')
\\gexec
EOF
  echo "$url"
}

stop() {
  if running; then
    say "stopping"
    as_owner "$bindir/pg_ctl" stop -D "$dir" -m fast -w -s
  else
    say "not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running ;;
  url) echo "$url" ;;
  destroy)
    stop
    [[ -d "$dir" ]] && rm -rf "$dir"
    say "removed $dir"
    ;;
  *) die "usage: $0 start|stop|status|url|destroy" ;;
esac
