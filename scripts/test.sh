#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test registered in ctest: the
# unit and integration tests, and the end-to-end tests (tests/e2e, the
# official Deepgram JS SDK against sluice and its simulator). Then each fuzz
# target for a minute (scripts/fuzz.sh --ci), and the sanitizer builds
# (scripts/sanitize.sh): the unit and integration tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, the concurrency-sensitive
# ones under ThreadSanitizer; any report fails. That step builds twice more
# (build-asan, build-tsan); SLUICE_TEST_SANITIZERS=0 skips it.
#
# The history store's tests run on SQLite and on PostgreSQL: this script
# starts a private PostgreSQL cluster (scripts/test-postgres.sh, 127.0.0.1:15432)
# and passes its URL in SLUICE_TEST_POSTGRES_URL. A cluster that was already
# running is reused and left running; one this script started is stopped at
# the end. The cluster tests likewise get a private Redis server
# (scripts/test-redis.sh, 127.0.0.1:16379) in SLUICE_TEST_REDIS_URL.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/install-deps.sh
bash scripts/build.sh

# The servers this script started, stopped on exit.
stop_postgres=0
stop_redis=0
cleanup() {
  if ((stop_postgres)); then bash scripts/test-postgres.sh stop || true; fi
  if ((stop_redis)); then bash scripts/test-redis.sh stop || true; fi
}
trap cleanup EXIT

if [[ -z "${SLUICE_TEST_POSTGRES_URL:-}" ]]; then
  bash scripts/test-postgres.sh status || stop_postgres=1
  echo "test: PostgreSQL for the history tests"
  SLUICE_TEST_POSTGRES_URL="$(bash scripts/test-postgres.sh start)"
  export SLUICE_TEST_POSTGRES_URL
fi

# The cluster tests run against a private Redis server (scripts/test-redis.sh,
# 127.0.0.1:16379), its URL in SLUICE_TEST_REDIS_URL; likewise reused when
# running, stopped at the end when this script started it.
if [[ -z "${SLUICE_TEST_REDIS_URL:-}" ]]; then
  bash scripts/test-redis.sh status || stop_redis=1
  echo "test: Redis for the cluster tests"
  SLUICE_TEST_REDIS_URL="$(bash scripts/test-redis.sh start)"
  export SLUICE_TEST_REDIS_URL
fi

echo "test: ctest"
ctest --test-dir build --output-on-failure -j1

# The fuzz targets, a minute each on their seed corpora (scripts/fuzz.sh;
# docs/architecture.md, "How the code is checked: fuzz targets").
echo "test: fuzz targets"
bash scripts/fuzz.sh --ci

if [[ "${SLUICE_TEST_SANITIZERS:-1}" == 0 ]]; then
  echo "test: sanitizer builds skipped (SLUICE_TEST_SANITIZERS=0)"
else
  echo "test: sanitizer builds"
  bash scripts/sanitize.sh all
fi
