#!/usr/bin/env bash
# Installs the Debian packages Tidings builds and tests with. Idempotent:
# packages already present are skipped, and nothing runs when all are.
set -euo pipefail

packages=(
  cmake ninja-build g++ ccache pkg-config
  libcaf-dev libboost-dev libboost-system-dev libmsgpack-cxx-dev
  libsqlite3-dev catch2 nlohmann-json3-dev libssl-dev
  python3 python3-websockets curl openssl
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
