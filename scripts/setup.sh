#!/bin/sh
# setup.sh: hands NVMe controllers to nvmux and back, like SPDK's
# scripts/setup.sh. POSIX sh (runs under busybox in the test guest).
#
#   scripts/setup.sh config   bind every NVMe controller not in use to vfio-pci
#                             (uio_pci_generic without an IOMMU) and reserve
#                             hugepages; a controller with a mounted namespace,
#                             a swap or a holder (dm, md) on it is left alone
#   scripts/setup.sh reset    give controllers bound to vfio-pci or
#                             uio_pci_generic back to the kernel's nvme driver
#   scripts/setup.sh status   NVMe controllers, their drivers and block
#                             devices; the 2 MiB hugepages
#   scripts/setup.sh user NAME [--group G] [--pages N]
#   scripts/setup.sh check NAME [--group G]
#                             running nvmux without root: a service account's
#                             hugetlbfs, run directory, memlock limit
#                             (scripts/setup-user.sh, which says more)
#
# Environment (SPDK's names):
#   PCI_ALLOWED="0000:04:00.0 05:00.0"  only these controllers (default: all)
#   PCI_BLOCKED="..."                  never these
#   DRIVER_OVERRIDE=vfio-pci|uio_pci_generic  the userspace driver (default:
#                                      vfio-pci when the IOMMU is on, else
#                                      uio_pci_generic)
#   HUGEMEM=MB                         hugepage memory config reserves (default 2048)
# Needs root. nvmux itself drives vfio-pci controllers only (IOVA = VA; see
# ARCHITECTURE.md, "The pcie transport").
set -u

sysfs=${NVMUX_SYSFS:-/sys}
devices=$sysfs/bus/pci/devices
nvme_class=0x010802

die() { echo "setup.sh: $*" >&2; exit 1; }

# Normalises 04:00.0 to 0000:04:00.0 (lower case).
norm() {
  a=$(echo "$1" | tr 'A-F' 'a-f')
  case "$a" in
    ????:??:??.?) echo "$a" ;;
    ??:??.?) echo "0000:$a" ;;
    *) die "'$1' is not a PCI address (DDDD:BB:DD.F or BB:DD.F)" ;;
  esac
}
in_list() {  # addr list
  for x in $2; do [ "$(norm "$x")" = "$1" ] && return 0; done
  return 1
}
selected() {  # addr: in PCI_ALLOWED (when set) and not in PCI_BLOCKED
  if [ -n "${PCI_ALLOWED:-}" ] && ! in_list "$1" "$(echo "$PCI_ALLOWED" | tr ',' ' ')"; then return 1; fi
  if [ -n "${PCI_BLOCKED:-}" ] && in_list "$1" "$(echo "$PCI_BLOCKED" | tr ',' ' ')"; then return 1; fi
  return 0
}
nvme_functions() {
  for d in "$devices"/*; do
    [ "$(cat "$d/class" 2>/dev/null)" = $nvme_class ] && basename "$d"
  done
}
driver_of() { [ -e "$devices/$1/driver" ] && basename "$(readlink "$devices/$1/driver")" || echo "-"; }
# The block devices of a controller bound to nvme (namespaces; partitions too).
blocks_of() {
  for c in "$devices/$1"/nvme/nvme*; do
    [ -d "$c" ] || continue
    for n in "$c"/nvme*n*; do
      [ -d "$n" ] || continue
      echo "$(basename "$n")"
      for p in "$n"/"$(basename "$n")"p*; do [ -d "$p" ] && basename "$p"; done
    done
  done
  # Multipath namespaces live under the subsystem: match by controller name.
  true
}
# Why a controller cannot be taken (empty: free).
in_use() {
  for b in $(blocks_of "$1"); do
    if grep -q "^/dev/$b " /proc/mounts 2>/dev/null; then
      echo "/dev/$b is mounted at $(grep "^/dev/$b " /proc/mounts | head -1 | cut -d' ' -f2)"; return
    fi
    if grep -q "^/dev/$b " /proc/swaps 2>/dev/null; then echo "/dev/$b is a swap device"; return; fi
    for h in "$sysfs/class/block/$b/holders"/*; do
      [ -e "$h" ] && { echo "/dev/$b is held by $(basename "$h")"; return; }
    done
  done
}
iommu_on() { [ -n "$(ls "$sysfs/kernel/iommu_groups" 2>/dev/null)" ]; }
load_module() {
  [ -d "$sysfs/bus/pci/drivers/$1" ] && return 0
  command -v modprobe >/dev/null 2>&1 && modprobe "$1" 2>/dev/null
  [ -d "$sysfs/bus/pci/drivers/$1" ] || die "driver $1 is not loaded and modprobe $1 failed"
}
bind() {  # addr driver
  cur=$(driver_of "$1")
  [ "$cur" = "$2" ] && return 0
  [ "$cur" != - ] && echo "$1" >"$devices/$1/driver/unbind"
  echo "$2" >"$devices/$1/driver_override"
  echo "$1" >"$sysfs/bus/pci/drivers_probe" 2>/dev/null
  [ "$(driver_of "$1")" = "$2" ] || die "$1: binding to $2 failed (driver now: $(driver_of "$1"))"
}

reserve_hugepages() {
  mb=${HUGEMEM:-2048}
  pages=$((mb / 2))
  nr=$sysfs/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
  [ -w "$nr" ] || die "cannot write $nr (run as root)"
  if [ "$(cat "$nr")" -lt $pages ]; then echo $pages >"$nr"; fi
  got=$(cat "$nr")
  [ "$got" -ge $pages ] || echo "setup.sh: only $got of $pages 2 MiB hugepages could be reserved" >&2
  if ! grep -q ' /dev/hugepages hugetlbfs' /proc/mounts; then
    mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages || die "cannot mount hugetlbfs at /dev/hugepages"
  fi
  echo "hugepages: $got x 2 MiB reserved, hugetlbfs at /dev/hugepages"
}

config() {
  if [ -n "${DRIVER_OVERRIDE:-}" ]; then drv=$DRIVER_OVERRIDE
  elif iommu_on; then drv=vfio-pci
  else drv=uio_pci_generic
  fi
  case "$drv" in vfio-pci|uio_pci_generic) ;; *) die "DRIVER_OVERRIDE='$drv' (allowed: vfio-pci, uio_pci_generic)" ;; esac
  [ "$drv" = vfio-pci ] && ! iommu_on &&
    die "vfio-pci needs an IOMMU and none is on (boot with intel_iommu=on or amd_iommu=on)"
  load_module "$drv"
  status=0
  for a in $(nvme_functions); do
    selected "$a" || continue
    why=$(in_use "$a")
    if [ -n "$why" ]; then
      echo "$a: in use ($why): left with $(driver_of "$a")" >&2; status=1; continue
    fi
    bind "$a" "$drv" && echo "$a: $(driver_of "$a")"
  done
  reserve_hugepages
  return $status
}

reset() {
  for a in $(nvme_functions); do
    selected "$a" || continue
    case "$(driver_of "$a")" in
      vfio-pci|uio_pci_generic)
        echo "$a" >"$devices/$a/driver/unbind"
        echo "" >"$devices/$a/driver_override"
        echo "$a" >"$sysfs/bus/pci/drivers_probe" 2>/dev/null
        echo "$a: $(driver_of "$a")" ;;
    esac
  done
}

status() {
  printf '%-14s %-10s %-16s %s\n' BDF VENDOR:DEV DRIVER BLOCK
  for a in $(nvme_functions); do
    v=$(cut -c3- "$devices/$a/vendor"); d=$(cut -c3- "$devices/$a/device")
    printf '%-14s %-10s %-16s %s\n' "$a" "$v:$d" "$(driver_of "$a")" "$(blocks_of "$a" | tr '\n' ' ')"
  done
  h=$sysfs/kernel/mm/hugepages/hugepages-2048kB
  echo "hugepages (2 MiB): $(cat "$h/nr_hugepages" 2>/dev/null || echo ?) reserved, $(cat "$h/free_hugepages" 2>/dev/null || echo ?) free"
}

case "${1:-}" in
  config) [ "$(id -u)" = 0 ] || die "config needs root"; config ;;
  reset) [ "$(id -u)" = 0 ] || die "reset needs root"; reset ;;
  status) status ;;
  user|check) exec bash "$(dirname "$0")/setup-user.sh" "$@" ;;
  *) echo "usage: setup.sh config|reset|status|user NAME|check NAME (see the top of this script)" >&2; exit 2 ;;
esac
