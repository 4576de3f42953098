#!/usr/bin/env bash
# `cmake --install` lays out a service (docs/operations.md, "Installing"):
# the binary, the default configuration, the systemd unit naming the
# installed binary, the state directory, the example configuration; no tests
# or benchmark programs; an existing configuration is kept. Installs into a
# temporary DESTDIR only. Usage: tests/install/layout.sh BUILD_DIR
set -euo pipefail

build="$(cd "$1" && pwd)"
tmp="$(mktemp -d /tmp/sluice-install-test-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
passes=0 failures=0
check() {  # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok: $what"; passes=$((passes + 1)); else echo "FAILED: $what"; failures=$((failures + 1)); fi
}

# 1. Prefix /usr, as a package would.
root="$tmp/usr-root"
DESTDIR="$root" cmake --install "$build" --prefix /usr >"$tmp/install.log"
check "binary in /usr/bin" test -x "$root/usr/bin/sluice"
check "configuration in /etc/sluice" test -f "$root/etc/sluice/sluice.yaml"
check "unit in /usr/lib/systemd/system" test -f "$root/usr/lib/systemd/system/sluice.service"
check "state directory /var/lib/sluice" test -d "$root/var/lib/sluice"
check "example configuration with the documentation" test -f "$root/usr/share/doc/sluice/sluice.example.yaml"
check "the unit runs the installed binary" \
  grep -qx 'ExecStart=/usr/bin/sluice serve --config /etc/sluice/sluice.yaml --admin-token-file /var/lib/sluice/sluice-admin.token' \
  "$root/usr/lib/systemd/system/sluice.service"
check "the unit checks the configuration before a reload" \
  grep -qx 'ExecReload=/usr/bin/sluice check-config /etc/sluice/sluice.yaml' "$root/usr/lib/systemd/system/sluice.service"
check "the installed configuration is valid" "$root/usr/bin/sluice" check-config "$root/etc/sluice/sluice.yaml"
check "the installed configuration keeps the history in /var/lib/sluice" \
  grep -qx '  data_dir: /var/lib/sluice' "$root/etc/sluice/sluice.yaml"
unexpected="$(cd "$root" && find . -type f | sort | grep -v -x -e ./usr/bin/sluice -e ./etc/sluice/sluice.yaml \
  -e ./usr/lib/systemd/system/sluice.service -e ./usr/share/doc/sluice/sluice.example.yaml || true)"
check "nothing else installed (no tests, no benchmark programs)${unexpected:+: $unexpected}" test -z "$unexpected"
if command -v systemd-analyze >/dev/null; then
  # verify resolves ExecStart= on this machine: point it at the staged binary.
  sed "s#/usr/bin/sluice#$root/usr/bin/sluice#g" "$root/usr/lib/systemd/system/sluice.service" >"$tmp/sluice.service"
  check "systemd-analyze verify" systemd-analyze verify "$tmp/sluice.service"
fi

# 2. An operator's configuration is kept; the shipped one goes beside it.
echo "listen: 127.0.0.1:18080  # the operator's" >"$root/etc/sluice/sluice.yaml"
DESTDIR="$root" cmake --install "$build" --prefix /usr >"$tmp/install2.log"
check "an existing configuration is kept" grep -q "the operator's" "$root/etc/sluice/sluice.yaml"
check "the shipped one beside it as sluice.yaml.default" cmp -s "$root/etc/sluice/sluice.yaml.default" \
  "$(dirname "$0")/../../deploy/sluice.yaml"
check "the install says so" grep -q "Keeping: .*sluice.yaml" "$tmp/install2.log"

# 3. Another prefix: the unit follows it (install time, not configure time).
root="$tmp/opt-root"
DESTDIR="$root" cmake --install "$build" --prefix /opt/sluice >"$tmp/install3.log"
check "binary under the prefix" test -x "$root/opt/sluice/bin/sluice"
check "unit under the prefix" test -f "$root/opt/sluice/lib/systemd/system/sluice.service"
check "the unit names the prefix's binary" grep -q '^ExecStart=/opt/sluice/bin/sluice serve' \
  "$root/opt/sluice/lib/systemd/system/sluice.service"
check "configuration still in /etc/sluice" test -f "$root/etc/sluice/sluice.yaml"

echo "layout: $passes passed, $failures failed"
((failures == 0))
