#!/usr/bin/env bash
# Installs what building, testing and the demo need, from Debian 12 packages only.
# Idempotent: installs only the packages that are missing. Needs root (apt-get).
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
  libssl-dev libjansson-dev libyaml-dev zlib1g-dev libarchive-dev libcurl4-openssl-dev
  libc-ares-dev libseccomp-dev libhttp-parser-dev
  openssl cpio python3 python3-pytest python3-cbor2 python3-cryptography
)

# Baselines for `make bench` (socat, nginx's stream proxy), only when asked for.
if [ "${1:-}" = "--bench" ]; then
  packages+=(socat nginx-light libnginx-mod-stream)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run this script as root (it uses apt-get)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
