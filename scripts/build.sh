#!/usr/bin/env bash
# Configures (Ninja, RelWithDebInfo, build dir "build") and builds every
# target (sluice, its tests and the benchmark programs), or only the targets
# named. Arguments that start with "-" go to the configure step. Warnings are
# errors when CI=true. Examples:
#   scripts/build.sh                        # everything
#   scripts/build.sh sluice                 # the gateway alone (what scripts/start.sh runs)
#   scripts/build.sh -DSLUICE_SANITIZE=ON
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

werror=OFF
[[ "${CI:-}" == "true" ]] && werror=ON

configure=()
targets=()
for arg in "$@"; do
  if [[ "$arg" == -* ]]; then configure+=("$arg"); else targets+=("$arg"); fi
done

echo "build: configuring (RelWithDebInfo, SLUICE_WERROR=$werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR="$werror" "${configure[@]}" >/dev/null
if ((${#targets[@]})); then
  echo "build: compiling ${targets[*]} (-j2)"
  cmake --build build -j2 --target "${targets[@]}"
else
  echo "build: compiling everything (-j2)"
  cmake --build build -j2
fi
echo "build: done: build/sluice"
