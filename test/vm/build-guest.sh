#!/bin/bash
# Builds the guest for the QEMU interop test: Debian 12's kernel (the
# linux-image-6.1.*-amd64 package that linux-image-amd64 depends on, fetched
# with `apt-get download` and unpacked with `dpkg -x`, nothing installed on
# the host) booted from its uncompressed vmlinux (PVH entry: faster under
# TCG than vmlinuz), and an initramfs of busybox-static, the nvme driver's
# modules with their dependencies, the ext2 driver (ext4.ko) and
# test/vm/guest-init.sh as /init (guest-common.sh, which every test guest's
# /init sources, as /lib/nvmux-guest.sh).
#
# Usage: build-guest.sh CACHE_DIR
#   Leaves CACHE_DIR/vmlinux and CACHE_DIR/initramfs.cpio.gz. A second run
#   with the same kernel package and the same guest-init.sh rebuilds nothing.
# Host packages it needs (Debian 12): busybox-static cpio xz-utils gzip
#   apt-utils (apt-get download); missing ones are installed with apt-get
#   when run as root, else named in the error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: build-guest.sh CACHE_DIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

need_pkgs=()
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)  # /bin/busybox, static
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
command -v gzip >/dev/null || need_pkgs+=(gzip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "build-guest: installing ${need_pkgs[*]} (apt-get)"
    apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "build-guest: missing host packages: ${need_pkgs[*]} (apt-get install them)" >&2
    exit 1
  fi
fi

# Which kernel package: linux-image-amd64's dependency.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-6\.1[^ ]*-amd64\)$/\1/p' | head -1)
if [ -z "$kpkg" ]; then
  echo "build-guest: apt-cache finds no linux-image-6.1.*-amd64 dependency of linux-image-amd64 (apt-get update?)" >&2
  exit 1
fi
kver=${kpkg#linux-image-}
stamp="$kpkg $(cat "$here/guest-init.sh" "$here/guest-common.sh" "$here/build-guest.sh" | sha256sum | cut -c1-16)"
if [ -f "$cache/vmlinux" ] && [ -f "$cache/initramfs.cpio.gz" ] && [ "$(cat "$cache/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "build-guest: cached guest in $cache ($kpkg)"
  exit 0
fi
echo "build-guest: building the guest for $kpkg in $cache"
rm -f "$cache/stamp"

work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
deb=$(ls "$cache"/"$kpkg"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  (cd "$work" && apt-get download "$kpkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  deb=$(ls "$work"/"$kpkg"_*.deb 2>/dev/null | head -1 || true)
  [ -n "$deb" ] || { echo "build-guest: apt-get download $kpkg failed" >&2; exit 1; }
  mv "$deb" "$cache/" && deb="$cache/$(basename "$deb")"
fi
dpkg -x "$deb" "$work/root"

# vmlinux: the xz stream inside vmlinuz (Debian builds with CONFIG_KERNEL_XZ).
vmlinuz="$work/root/boot/vmlinuz-$kver"
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1 || true)
if [ -n "$off" ]; then
  # xz reports the trailing data after the stream as an error: judge by the output.
  tail -c +$((off + 1)) "$vmlinuz" | xz -dc 2>/dev/null >"$work/vmlinux.tmp" || true
fi
if [ -s "$work/vmlinux.tmp" ] && [ "$(head -c 4 "$work/vmlinux.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
  mv "$work/vmlinux.tmp" "$cache/vmlinux"
  echo "build-guest: extracted vmlinux (PVH entry) from vmlinuz at offset $off"
else
  echo "build-guest: could not extract vmlinux from vmlinuz; booting vmlinuz" >&2
  cp "$vmlinuz" "$cache/vmlinux"
fi

# Modules: the wanted ones and, transitively, their .modinfo depends=.
moddir="$work/root/lib/modules/$kver"
declare -A path_of=()
while IFS= read -r f; do
  name=$(basename "$f"); name=${name%%.ko*}
  path_of[$name]=$f; path_of[${name//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko' -o -name '*.ko.xz')
ordered=()
declare -A seen=()
add_module() {
  local name=$1 f deps d
  [ -n "${seen[$name]:-}" ] && return 0
  seen[$name]=1
  f=${path_of[$name]:-${path_of[${name//-/_}]:-}}
  [ -n "$f" ] || { echo "build-guest: module $name not found in $kpkg" >&2; exit 1; }
  if [[ $f == *.xz ]]; then xz -dc "$f" >"$work/m.ko"; f="$work/m.ko"; fi
  deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -1)
  for d in ${deps//,/ }; do add_module "$d"; done
  ordered+=("$name")
}
# nvme and its dependencies; crc-t10dif / crc64-rocksoft's crypto back ends
# (their soft dependencies); ext4.ko drives ext2 (CONFIG_EXT4_USE_FOR_EXT2) and
# needs the crc32c hash at mount time (crc32c_generic).
# The pcie test (pcie_test.sh) also needs the userspace drivers: vfio-pci with
# its IOMMU back end (a soft dependency) and uio_pci_generic. The nvmet-tcp
# test (nvmet_tcp_test.sh) needs Linux's NVMe target on a RAM disk (brd) and a
# virtio-net NIC.
for m in crct10dif_generic crc64_rocksoft_generic nvme crc32c_generic ext4 vfio_iommu_type1 vfio_pci uio_pci_generic \
    nvmet nvmet_tcp brd virtio_pci virtio_net; do
  add_module "$m"
done

initrd="$work/initrd"
mkdir -p "$initrd"/{bin,dev,proc,sys,tmp,mnt,lib/modules}
cp /bin/busybox "$initrd/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$initrd/bin/$applet"
done
: >"$initrd/lib/modules/load-order"
for m in "${ordered[@]}"; do
  f=${path_of[$m]:-${path_of[${m//-/_}]}}
  if [[ $f == *.xz ]]; then xz -dc "$f" >"$initrd/lib/modules/$m.ko"; else cp "$f" "$initrd/lib/modules/$m.ko"; fi
  echo "$m" >>"$initrd/lib/modules/load-order"
done
install -m 0755 "$here/guest-init.sh" "$initrd/init"
install -m 0644 "$here/guest-common.sh" "$initrd/lib/nvmux-guest.sh"
(cd "$initrd" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 >"$cache/initramfs.cpio.gz.tmp")
mv "$cache/initramfs.cpio.gz.tmp" "$cache/initramfs.cpio.gz"
echo "$stamp" >"$cache/stamp"
echo "build-guest: modules: ${ordered[*]}"
echo "build-guest: done: $cache/vmlinux ($(du -h "$cache/vmlinux" | cut -f1)), $cache/initramfs.cpio.gz ($(du -h "$cache/initramfs.cpio.gz" | cut -f1))"
