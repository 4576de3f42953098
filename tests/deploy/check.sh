#!/usr/bin/env bash
# The monitoring files under deploy/ (docs/operations.md, "Dashboards and
# alerts"): the alert rules load (`promtool check rules`) and fire as their
# unit tests expect (`promtool test rules`), the Grafana dashboard is JSON
# whose every query is valid PromQL, and every metric they use is one sluice
# exposes (listed in docs/api.md). Needs promtool (Debian's prometheus
# package, scripts/install-deps.sh) and jq; skipped (77) without promtool.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rules="$root/deploy/prometheus/sluice-alerts.yml"
dashboard="$root/deploy/grafana/sluice.json"
if ! command -v promtool >/dev/null; then
  echo "skipped: promtool not installed (apt-get install prometheus)"
  exit 77
fi
tmp="$(mktemp -d /tmp/sluice-deploy-test-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
failures=0
check() {  # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@" >"$tmp/out" 2>&1; then echo "ok: $what"; else echo "FAILED: $what"; cat "$tmp/out"; failures=$((failures + 1)); fi
}

check "alert rules load" promtool check rules "$rules"
check "alert rules fire as tested" bash -c "cd '$root/tests/deploy' && promtool test rules sluice-alerts.test.yml"
check "dashboard is JSON" jq -e '.panels | length > 0' "$dashboard"

# Every dashboard query as a recording rule, its variables given values.
{
  echo "groups:"
  echo "  - name: dashboard"
  echo "    rules:"
  i=0
  while IFS= read -r expr; do
    i=$((i + 1))
    expr="${expr//\$__rate_interval/5m}"
    expr="${expr//\$instance/.*}"
    expr="${expr//\$pool/.*}"
    printf '      - record: dashboard_query_%d\n        expr: %s\n' "$i" "$(jq -Rn --arg e "$expr" '$e')"
  done < <(jq -r '.. | objects | select(has("expr")) | .expr' "$dashboard")
} >"$tmp/dashboard-rules.yml"
check "every dashboard query is valid PromQL" promtool check rules "$tmp/dashboard-rules.yml"

# Every metric the files use is documented (docs/api.md's table).
missing=()
for name in $(grep -ohE '\b(sluice|process)_[a-z0-9_]+' "$rules" "$dashboard" | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
  grep -q "\`$name\`" "$root/docs/api.md" || missing+=("$name")
done
if ((${#missing[@]})); then
  echo "FAILED: metrics used under deploy/ but not in docs/api.md: ${missing[*]}"
  failures=$((failures + 1))
else
  echo "ok: every metric used under deploy/ is documented"
fi
exit $((failures > 0))
