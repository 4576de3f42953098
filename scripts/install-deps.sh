#!/usr/bin/env bash
# Installs what building and testing sluice needs on Debian 12 (run as root):
# the Debian packages below, then the npm packages of the end-to-end tests
# (tests/e2e) and of the admin dashboard (src/admin/dashboard), each from its
# package-lock.json. Safe to run again: each step is
# skipped when it is already done.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libboost1.81-all-dev libssl-dev libsqlite3-dev libpq-dev libyaml-cpp-dev libsystemd-dev
  libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libgmock-dev
  # date/tz for the history's time zones, with its runtime library; it reads
  # the zones from tzdata (below)
  libhowardhinnant-date-dev libdate-tz3
  nodejs npm espeak-ng sox ca-certificates openssl tzdata sqlite3
  postgresql
  # cluster mode (src/cluster/): the Redis client library, and the server the
  # cluster tests run against (scripts/test-redis.sh)
  libhiredis-dev redis-server
  # the benchmark suite (bench/run; its smoke run is a test): the proxies it
  # compares with, the tools it drives them with, and liburing for the bare
  # relay it measures as the floor (bench/relay_floor.cpp)
  nginx haproxy jq iproute2 procps util-linux liburing-dev
  # the fuzz targets (fuzz/, scripts/fuzz.sh): clang with libFuzzer and the
  # sanitizers' runtimes
  clang-14 libclang-rt-14-dev libfuzzer-14-dev
  # the admin dashboard's browser test (tests/e2e/dashboard.test.mjs, driven
  # by playwright-core from npm)
  chromium
  # promtool, for the tests of /metrics and of the alert rules and dashboard
  # under deploy/ (tests/deploy/check.sh)
  prometheus
)

missing=()
for p in "${packages[@]}"; do
  # A nodejs package that bundles npm (as NodeSource's does) conflicts with
  # Debian's npm package: an npm already on PATH is enough.
  if [[ "$p" == npm ]] && command -v npm >/dev/null; then continue; fi
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)"
  [[ "$status" == ii* ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: Debian packages already installed"
else
  if ((EUID != 0)); then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  echo "install-deps: apt-get update"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  echo "install-deps: installing ${missing[*]}"
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # nginx's and HAProxy's own services are not used: the bench starts its own.
  # Nor is Prometheus's: only its promtool is.
  for svc in nginx haproxy prometheus; do
    if [[ " ${missing[*]} " == *" $svc "* ]]; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
  echo "install-deps: Debian packages installed"
fi

# npm ci wipes and reinstalls node_modules, so only run it when the lockfile
# changed since the last install (npm keeps a copy of the resolved tree in
# node_modules/.package-lock.json). tests/e2e: the end-to-end and browser
# tests; src/admin/dashboard: uPlot, which the build embeds into the binary.
for dir in tests/e2e src/admin/dashboard; do
  pkg="$root/$dir"
  stamp="$pkg/node_modules/.sluice-lock-sha256"
  want="$(sha256sum "$pkg/package-lock.json" | cut -d' ' -f1)"
  if [[ -d "$pkg/node_modules" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "install-deps: $dir/node_modules up to date"
  else
    echo "install-deps: npm ci in $dir"
    (cd "$pkg" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
done
