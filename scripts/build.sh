#!/usr/bin/env bash
# Configures and builds into ./build (or $TIDINGS_BUILD_DIR). ccache is used
# when present; jobs default to the number of cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${TIDINGS_BUILD_DIR:-$root/build}"
jobs="${TIDINGS_JOBS:-$(nproc)}"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${TIDINGS_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
fi
cmake --build "$build" -j "$jobs" "$@"
