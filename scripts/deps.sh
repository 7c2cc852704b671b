#!/usr/bin/env bash
# Installs what nvmux needs from Debian packages, if anything is missing.
# Idempotent and quiet when everything is present. Needs root (or sudo) to install.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libdpdk-dev libnuma-dev libbsd-dev
  libboost-dev libhwloc-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  procps util-linux
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "nvmux: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "nvmux: dependencies installed"
