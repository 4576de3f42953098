#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test registered in ctest: the
# unit and integration tests, and the end-to-end tests (tests/e2e, the
# official Deepgram JS SDK against sluice and its simulator).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/install-deps.sh
bash scripts/build.sh
echo "test: ctest"
ctest --test-dir build --output-on-failure -j1
