#!/usr/bin/env bash
# Installs dependencies, builds the sluice binary (only it: the tests and
# the benchmark programs are built by scripts/test.sh), and runs the gateway.
# Arguments go to `sluice serve`; with no --upstream and no DEEPGRAM_API_KEY
# it starts the bundled Deepgram simulator (part of the same binary) as its
# upstream. Example:
#   scripts/start.sh --listen 127.0.0.1:8080
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/install-deps.sh >&2
bash scripts/build.sh sluice >&2
exec build/sluice serve "$@"
