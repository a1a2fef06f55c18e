#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the Catch2 unit
# tests of each folder and the integration tests against a real server.
# Extra arguments go to ctest (e.g. -L integration, -R jwt).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
build="${TIDINGS_BUILD_DIR:-$root/build}"
cd "$build"
ctest --output-on-failure -j "${TIDINGS_TEST_JOBS:-2}" --timeout 300 "$@"
