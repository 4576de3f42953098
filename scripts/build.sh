#!/usr/bin/env bash
# Configures (Ninja, RelWithDebInfo, build dir "build") and builds sluice and
# its tests. Warnings are errors when CI=true. Extra arguments go to the
# configure step, e.g. scripts/build.sh -DSLUICE_SANITIZE=ON.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

werror=OFF
[[ "${CI:-}" == "true" ]] && werror=ON

echo "build: configuring (RelWithDebInfo, SLUICE_WERROR=$werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR="$werror" "$@" >/dev/null
echo "build: compiling (-j2)"
cmake --build build -j2
echo "build: done: build/sluice"
