#!/usr/bin/env bash
# Builds and runs the libFuzzer targets in fuzz/ (docs/architecture.md, "How
# the code is checked: fuzz targets").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

targets=(frame upgrade sniff config timespec)
build="${SLUICE_FUZZ_BUILD:-$root/build-fuzz}"
cxx="${SLUICE_FUZZ_CXX:-clang++-14}"

usage() {
  cat <<EOF
usage: scripts/fuzz.sh TARGET [SECONDS] [--merge]
       scripts/fuzz.sh --ci [SECONDS]
       scripts/fuzz.sh --list | --build | --help

Runs one fuzz target (default 60 s) on its seed corpus, fuzz/corpus/TARGET,
and prints its executions, exec/s, coverage and corpus size. Inputs the run
finds are kept in $(basename "$build")/corpus/TARGET (not in the repository);
--merge then adds those that reach new coverage, minimized, to
fuzz/corpus/TARGET (libFuzzer's -merge=1). A crash or an oracle's
disagreement stops the run; the input is saved as
$(basename "$build")/artifacts/TARGET/crash-* and the run fails. Reproduce it
with: $(basename "$build")/fuzz_TARGET FILE

  --ci [SECONDS]  every target in turn for SECONDS each (default 60), on its
                  seed corpus only; fails if any target finds a crash
  --list          the targets
  --build         configure and build $(basename "$build") only

The targets are built with $cxx (libFuzzer, AddressSanitizer and
UndefinedBehaviorSanitizer) in their own build directory, $build, configured
with -DSLUICE_FUZZ=ON: nothing else of the project is built there.
Environment: SLUICE_FUZZ_BUILD (build directory), SLUICE_FUZZ_CXX (compiler).

Targets:
  frame     the relay's frame walker against a reference RFC 6455 decoder,
            split at every point, both directions
  upgrade   the upgrade request: HTTP parsing, upgrade check against Beast's
            accept, credentials, tenant and pool classification
  sniff     text-message type sniffing against Boost.JSON
  config    the YAML configuration loader
  timespec  the history's time syntax, durations and format_time round trips
EOF
}

is_target() {
  local t
  for t in "${targets[@]}"; do [[ "$t" == "$1" ]] && return 0; done
  return 1
}

configure_and_build() {
  if ! command -v "$cxx" >/dev/null; then
    echo "fuzz: $cxx not found (scripts/install-deps.sh installs clang-14 and libFuzzer)" >&2
    exit 1
  fi
  if [[ ! -f "$build/build.ninja" ]]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER="$cxx" -DSLUICE_FUZZ=ON >/dev/null
  fi
  cmake --build "$build" -j"${SLUICE_FUZZ_JOBS:-2}" --target "$@"
}

# Runs one target: run_target NAME SECONDS SCRATCH_DIR
run_target() {
  local name="$1" seconds="$2" scratch="$3"
  local log="$build/logs/$name.log"
  mkdir -p "$scratch" "$build/artifacts/$name" "$build/logs"
  echo "fuzz: $name for ${seconds}s (log: ${log#"$root"/})"
  local status=0
  "$build/fuzz_$name" "$scratch" "$root/fuzz/corpus/$name" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$name/" >"$log" 2>&1 || status=$?
  summarize "$name" "$log"
  if ((status != 0)); then
    echo "fuzz: $name FAILED (exit $status):" >&2
    grep -E "oracle|ERROR|SUMMARY|Test unit written|panic|deadly" "$log" | head -20 >&2 || true
    return 1
  fi
}

# execs, exec/s, coverage and corpus from libFuzzer's last status line and final stats.
summarize() {
  local name="$1" log="$2"
  local last execs rate cov ft corp
  last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corp="$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")"
  printf 'fuzz: %-9s execs %s, exec/s %s, cov %s, ft %s, corpus %s (units/size)\n' \
    "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
}

case "${1:-}" in
  ""|-h|--help|help)
    usage
    [[ -n "${1:-}" ]] || exit 2
    ;;
  --list)
    printf '%s\n' "${targets[@]}"
    ;;
  --build)
    configure_and_build "${targets[@]/#/fuzz_}"
    ;;
  --ci)
    seconds="${2:-60}"
    configure_and_build "${targets[@]/#/fuzz_}"
    failed=()
    for t in "${targets[@]}"; do
      scratch="$(mktemp -d)"
      run_target "$t" "$seconds" "$scratch" || failed+=("$t")
      rm -rf "$scratch"
    done
    if ((${#failed[@]})); then
      echo "fuzz: crashes or disagreements in: ${failed[*]} (inputs in ${build#"$root"/}/artifacts/)" >&2
      exit 1
    fi
    echo "fuzz: every target ran ${seconds}s without a finding"
    ;;
  *)
    name="$1"
    if ! is_target "$name"; then
      echo "fuzz: unknown target '$name' (scripts/fuzz.sh --list)" >&2
      exit 2
    fi
    seconds=60
    merge=0
    for arg in "${@:2}"; do
      case "$arg" in
        --merge) merge=1 ;;
        *[!0-9]*|"") echo "fuzz: bad argument '$arg'" >&2; exit 2 ;;
        *) seconds="$arg" ;;
      esac
    done
    configure_and_build "fuzz_$name"
    run_target "$name" "$seconds" "$build/corpus/$name"
    if ((merge)); then
      before="$(ls "$root/fuzz/corpus/$name" | wc -l)"
      "$build/fuzz_$name" -merge=1 "$root/fuzz/corpus/$name" "$build/corpus/$name" \
        >"$build/logs/$name.merge.log" 2>&1
      after="$(ls "$root/fuzz/corpus/$name" | wc -l)"
      echo "fuzz: merged into fuzz/corpus/$name: $before -> $after files"
    fi
    ;;
esac
