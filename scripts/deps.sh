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

# Peers the interop tests run against (../shared/peers: SPDK's tools and
# target, QEMU with the vfio-user client) need their runtime libraries.
if [ -n "${NVMUX_SPDK_DIR:-}" ]; then
  packages+=(libaio1 libcunit1 libfuse3-3 libkeyutils1 libssl3 libuuid1 libnuma1 libjson-c5 python3)
fi
if [ -n "${NVMUX_QEMU_DIR:-}" ]; then
  packages+=(libgnutls30 libpixman-1-0 libpng16-16 libfdt1 libnuma1 libkeyutils1 libglib2.0-0 libslirp0 libbpf1
    libncursesw6 libfuse3-3 libaio1 libbz2-1.0 busybox-static cpio xz-utils zstd)
fi

# In CI, gdb: a test whose child does not exit prints that child's stacks
# (test/util/subprocess.cc), so a hang seen only on a loaded CI machine
# leaves its trace in the log.
if [ "${CI:-}" = true ]; then
  packages+=(gdb)
fi

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
