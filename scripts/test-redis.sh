#!/usr/bin/env bash
# A private Redis server for the cluster tests, on loopback only, on a fixed
# unusual port, with its own folder and a password (not Debian's default
# instance, which is left alone).
#
#   scripts/test-redis.sh start     starts it if it is not running and prints
#                                   its URL on stdout
#   scripts/test-redis.sh stop      stops it (the folder stays)
#   scripts/test-redis.sh status    exits 0 when it is running
#   scripts/test-redis.sh url       prints the URL
#   scripts/test-redis.sh destroy   stops it and removes the folder
#
# Safe to run again: a running server is reused. Nothing is persisted (no RDB
# snapshots, no AOF): the tests need a real server, not durable data. Uses
# Debian's redis-server and redis-cli (scripts/install-deps.sh installs them).
#
# Environment (optional):
#   SLUICE_TEST_REDIS_PORT=16379                         the TCP port (127.0.0.1 only)
#   SLUICE_TEST_REDIS_DIR=/var/tmp/sluice-test-redis-$PORT   the folder
set -euo pipefail

port="${SLUICE_TEST_REDIS_PORT:-16379}"
dir="${SLUICE_TEST_REDIS_DIR:-/var/tmp/sluice-test-redis-$port}"
password=sluice-test-password
url="redis://:$password@127.0.0.1:$port/0"

say() { printf 'test-redis: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[[ "$port" =~ ^[0-9]+$ ]] && ((port >= 1024 && port <= 65535)) || die "SLUICE_TEST_REDIS_PORT must be 1024..65535"

need_server() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    die "no redis-server or redis-cli (install the redis-server package: scripts/install-deps.sh)"
}

cli() { REDISCLI_AUTH="$password" redis-cli -h 127.0.0.1 -p "$port" "$@"; }

running() {
  command -v redis-cli >/dev/null || return 1
  [[ "$(cli ping 2>/dev/null)" == PONG ]]
}

start() {
  need_server
  if running; then
    say "already running on 127.0.0.1:$port ($dir)"
  else
    mkdir -p "$dir"
    chmod 700 "$dir"
    say "starting on 127.0.0.1:$port"
    # The password goes in a config file, not on the command line (ps).
    cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $port
protected-mode yes
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
save ""
appendonly no
requirepass $password
EOF
    redis-server "$dir/redis.conf" || die "redis-server did not start (log: $dir/redis.log)"
    for _ in $(seq 1 100); do
      running && break
      sleep 0.1
    done
    running || { tail -n 20 "$dir/redis.log" >&2 || true; die "the server did not answer within 10 s (log: $dir/redis.log)"; }
  fi
  echo "$url"
}

stop() {
  if running; then
    say "stopping"
    cli shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do
      running || return 0
      sleep 0.1
    done
    die "the server did not stop within 10 s"
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
