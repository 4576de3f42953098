#!/usr/bin/env bash
# A smoke run of the benchmark suite (bench/run) with tiny loads: every
# target (the bare relay's two engines included), the streaming load twice
# (so the medians table is built), handshakes and idle streams, into a
# temporary results folder. Passes when the report has a row for every target,
# run and kind, every stream connected, and no row is flagged for lost or
# reordered echoes, failed connects, streams ended early or a missing window.
# Timing is not judged (that is what the real runs are for).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$(mktemp -d /tmp/sluice-bench-smoke.XXXXXX)"
trap 'rm -rf "$out"' EXIT

targets="direct sluice nginx haproxy floor-epoll floor-uring"
BENCH_TARGETS="$targets" BENCH_REPEAT=2 BENCH_RESULTS="$out" BENCH_DURATION=3 BENCH_LOADS=5x640x20 BENCH_HANDSHAKE_STREAMS=20 \
  BENCH_IDLE_STREAMS=20 BENCH_IDLE_HOLD=1 BENCH_RAMP=100 "$root/bench/run" >"$out/stdout" 2>"$out/stderr" || {
  echo "bench/run failed:" >&2
  tail -n 20 "$out/stderr" >&2
  exit 1
}
report="$out/latest.md"
[ -s "$report" ] || { echo "no report written" >&2; exit 1; }

fail=0
expect() {  # expect REGEX WHAT
  grep -Eq "$1" "$report" || { echo "missing: $2" >&2; fail=1; }
}
for target in $targets; do
  for run in 1 2; do
    expect "^\| $target #$run \| 5 × 640 B / 20 ms \| 5/5 \|" "$target streaming row of run $run with 5/5 connects"
  done
  expect "^\| $target \| 5 × 640 B / 20 ms \| 2 \|" "$target medians row over 2 runs"
  expect "^\| $target \| 20 \| 20 \|" "$target handshake row with 20/20 connects"
done
for target in sluice nginx haproxy floor-epoll floor-uring; do
  expect "^\| $target \| 20/20 \|" "$target idle row with 20/20 streams held"
done
if grep -Eq "frames lost|reordered|connects failed|ended early|no window" "$report"; then
  echo "flagged rows:" >&2
  grep -E "frames lost|reordered|connects failed|ended early|no window" "$report" >&2
  fail=1
fi
if ((fail)); then
  cat "$report" >&2
  exit 1
fi
echo "bench smoke: report complete, no frame lost"
