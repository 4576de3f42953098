#!/usr/bin/env bash
# Builds sluice under the sanitizers and runs the tests there; any sanitizer
# report fails the run. See docs/architecture.md, "How the code is checked".
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/sanitize.sh [--build-only|--test-only] [address|thread|all]

  address  AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer
           in one build (build-asan): every unit and integration test.
  thread   ThreadSanitizer (build-tsan): the concurrency-sensitive tests (the
           registry, the history recorder, the admission controller and its
           queue, the relay and the admin API with `threads: 2`, the gateway
           process with `threads: 2`; the list is TSAN_TESTS in this script).
  all      both, address first (the default).

  --build-only  configure and build, run nothing
  --test-only   run the tests of a build made before

Both builds use Ninja, -O1 -g, no benchmark programs, and ccache when it is
installed. A sanitizer report anywhere (in a test, or in a `sluice` process a
test started) fails the run: each process writes its reports under
<build dir>/sanitizer-logs, and the run fails when a report is there, as it
does when a test fails. The suppressions (third-party code only, each with
its reason) are in tests/sanitizers/ (tsan.supp, ubsan.supp).

Environment:
  SANITIZE_JOBS=2          compile jobs
  SANITIZE_CTEST_ARGS=...  more ctest arguments (e.g. "-R Registry" to narrow)
  SLUICE_TEST_POSTGRES_URL the PostgreSQL of the history tests; when unset,
                           scripts/test-postgres.sh starts one (and stops it
                           at the end if it was not running)
  SLUICE_TEST_REDIS_URL    the Redis of the cluster tests; likewise started
                           with scripts/test-redis.sh when unset
EOF
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The ThreadSanitizer run: the tests where threads share state. ctest names
# (extended regular expressions, joined with |).
TSAN_TESTS=(
  # The live registry: concurrent add/remove, listing while streams change.
  '^unit\.Registry\.'
  # The admission controller and its queue (from several threads at once in
  # ConcurrentRequestsFromManyStrandsNeverExceedTheLimit), the release-delay
  # estimator.
  '^unit\.Admission\.' '^unit\.ReleaseDelay\.'
  # The relay's write gate and the shared ticker (its own strand, subscribers
  # on other threads).
  '^unit\.WriteGate\.' '^integration\.Ticker\.'
  # The history recorder: I/O threads hand rows to its writer thread.
  '^integration\.History\.' '^integration\.HistoryApi\.'
  # The accept loop: under descriptor exhaustion (not run in the address
  # build), and stopped from another thread while two threads accept.
  '^integration\.Listener\.'
  # Admission end to end: the pool limit and queue, chaos, 429s, reaps, the
  # pools API, and the gateway process's drain (SIGTERM) and reload (SIGHUP),
  # each with `threads: 2`.
  '^integration\.Threads/Admission\..*/Threads2( |$)'
  '^integration\.Threads/GatewayProcess\..*/Threads2( |$)'
  # The relay with `threads: 2`: every stream ending (close, FIN, reset,
  # protocol errors, reaps, DELETE, drain) on plain and TLS legs, with resume
  # off and on, the gateway
  # and relay suites, and the admin API read while streams open and close.
  '^integration\.Legs/Endings\..*/(Plain|Tls)_Threads2(_Resume)?( |$)'
  # Resume: a dropped upstream replaced under the relay's feet, the replay
  # racing the pumps; the chaos test runs with `threads: 2`.
  '^integration\.Resume\.'
  '^integration\.Threads/Gateway\..*/Threads2( |$)'
  '^integration\.Threads/GatewayRelay\..*/Threads2( |$)'
  '^integration\.Threads/AdminWhileStreaming\..*/Threads2( |$)'
  # The dashboard's event stream: events published from the thread that
  # records them, to streams on other strands.
  '^integration\.Threads/AdminStream\..*/Threads2( |$)'
  # The cluster link: sessions hand acquires and releases to its worker
  # thread; its subscriber thread wakes waiting sessions on their strands;
  # three gateways in one process sharing one Redis.
  '^integration\.ClusterAgent\.' '^integration\.Cluster\.'
)

mode=all
step=all
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --build-only) step=build ;;
    --test-only) step=test ;;
    address|thread|all) mode="$arg" ;;
    *) echo "sanitize: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

jobs="${SANITIZE_JOBS:-2}"
say() { printf 'sanitize: %s\n' "$*"; }

build() {  # sanitizer build-dir
  local sanitizer="$1" dir="$2" t0=$SECONDS
  say "$sanitizer: configuring $dir"
  cmake -S . -B "$dir" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DSLUICE_SANITIZE="$sanitizer" \
    -DSLUICE_BENCH=OFF -DSLUICE_TESTS=ON -DSLUICE_WERROR=OFF >/dev/null
  say "$sanitizer: compiling (-j$jobs)"
  cmake --build "$dir" -j"$jobs"
  say "$sanitizer: built in $((SECONDS - t0)) s"
}

# Runs ctest in `dir` with the sanitizer options that make every report
# fatal and logged, then fails if a test failed or a report was logged.
run_tests() {  # sanitizer build-dir ctest-args...
  local sanitizer="$1" dir="$2" t0=$SECONDS
  shift 2
  local logs="$root/$dir/sanitizer-logs"
  rm -rf "$logs"
  mkdir -p "$logs"
  # Every report ends the process that made it with a failure status and is
  # kept in a file named after the process (the test, or a `sluice` child a
  # test started and may kill without reading its status).
  local common="halt_on_error=1:print_stacktrace=1:log_path=$logs/report"
  export ASAN_OPTIONS="$common:exitcode=86:detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1"
  export LSAN_OPTIONS="exitcode=86"
  export UBSAN_OPTIONS="$common:suppressions=$root/tests/sanitizers/ubsan.supp"
  export TSAN_OPTIONS="$common:exitcode=86:second_deadlock_stack=1:history_size=4:suppressions=$root/tests/sanitizers/tsan.supp"
  say "$sanitizer: running tests"
  local status=0
  # shellcheck disable=SC2086
  ctest --test-dir "$dir" --output-on-failure -j1 --timeout 900 "$@" ${SANITIZE_CTEST_ARGS:-} || status=$?
  local reports
  reports="$(find "$logs" -type f | sort)"
  if [[ -n "$reports" ]]; then
    say "$sanitizer: sanitizer reports:"
    while IFS= read -r f; do
      echo "---- $f"
      cat "$f"
    done <<<"$reports"
    status=1
  fi
  say "$sanitizer: tests ran in $((SECONDS - t0)) s"
  if ((status != 0)); then
    say "$sanitizer: FAILED (a test failed or a sanitizer reported; see above)"
    return 1
  fi
  say "$sanitizer: passed, no reports"
}

# Tests the address build does not run, each with its reason.
ASAN_EXCLUDE=(
  # Takes every file descriptor on purpose. UBSan's vptr check, on a type it
  # has not seen yet, tests that the vtable is readable by writing it to a
  # pipe (sanitizer_common's IsAccessibleMemoryRange); with no descriptor left
  # it cannot make the pipe and reports fmt's valid buffer as an invalid
  # object, fatally, as the build makes every UBSan report. The test runs in
  # the ordinary build and under ThreadSanitizer.
  '^integration\.Listener\.OutOfDescriptorsBacksOffAndAcceptsAgainWhenTheyAreFree$'
)

run_address() {
  [[ "$step" == test ]] || build address build-asan
  local IFS='|'
  [[ "$step" == build ]] || run_tests address build-asan -R '^(unit|integration)\.' -E "${ASAN_EXCLUDE[*]}"
}

run_thread() {
  [[ "$step" == test ]] || build thread build-tsan
  local IFS='|'
  [[ "$step" == build ]] || run_tests thread build-tsan -R "${TSAN_TESTS[*]}"
}

# The history tests' PostgreSQL, as scripts/test.sh provides it (a cluster
# this script starts is stopped at the end; one already running is reused).
# Likewise the cluster tests' Redis (scripts/test-redis.sh).
stop_postgres=0
stop_redis=0
cleanup() {
  if ((stop_postgres)); then bash scripts/test-postgres.sh stop >/dev/null 2>&1 || true; fi
  if ((stop_redis)); then bash scripts/test-redis.sh stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
if [[ "$step" != build && -z "${SLUICE_TEST_POSTGRES_URL:-}" ]]; then
  bash scripts/test-postgres.sh status >/dev/null 2>&1 || stop_postgres=1
  say "PostgreSQL for the history tests"
  SLUICE_TEST_POSTGRES_URL="$(bash scripts/test-postgres.sh start)"
  export SLUICE_TEST_POSTGRES_URL
fi
if [[ "$step" != build && -z "${SLUICE_TEST_REDIS_URL:-}" ]]; then
  bash scripts/test-redis.sh status >/dev/null 2>&1 || stop_redis=1
  say "Redis for the cluster tests"
  SLUICE_TEST_REDIS_URL="$(bash scripts/test-redis.sh start)"
  export SLUICE_TEST_REDIS_URL
fi

case "$mode" in
  address) run_address ;;
  thread) run_thread ;;
  all)
    status=0
    run_address || status=1
    run_thread || status=1
    exit "$status"
    ;;
esac
