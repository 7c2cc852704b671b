#!/usr/bin/env bash
# Reserves and gives back 2 MiB hugepages for nvmux.
#
#   scripts/hugepages.sh reserve [PAGES]   at least PAGES pages (default $NVMUX_HUGEPAGES or 1024 = 2 GiB);
#                                          mounts hugetlbfs at /dev/hugepages when nothing is mounted
#   scripts/hugepages.sh release           restores the count (and mount) found before 'reserve'
#   scripts/hugepages.sh status
#
# 'reserve' records what it changed in /var/run/nvmux-hugepages.state, so
# 'release' undoes exactly that and nothing else. Needs root; run by another
# user (after scripts/setup.sh user NAME reserved pages for good), 'reserve'
# only checks that enough are reserved and 'release' does nothing.
set -euo pipefail

state=/var/run/nvmux-hugepages.state
# The 2 MiB pool by name: /proc/sys/vm/nr_hugepages is the default size's, which may be 1 GiB.
nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
mountpoint=/dev/hugepages

hugetlbfs_mounted() { awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; }

status() {
  echo "2 MiB hugepages: $(cat "$nr") reserved, $(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages) free"
  awk '$3 == "hugetlbfs" { print "hugetlbfs mounted at " $2 }' /proc/mounts
}

if [ "$(id -u)" -ne 0 ] && [ "${1:-status}" != status ]; then
  case "$1" in
    reserve)
      want=${2:-${NVMUX_HUGEPAGES:-1024}}
      [[ "$want" =~ ^[0-9]+$ ]] || { echo "hugepages.sh: bad page count '$want': expected a number of 2 MiB pages" >&2; exit 2; }
      have=$(cat "$nr")
      if [ "$have" -lt "$want" ]; then
        echo "hugepages.sh: $have hugepages reserved, $want wanted, and only root may reserve more: as root, run" \
          "scripts/setup.sh user $(id -un) --pages $want" >&2
        exit 1
      fi
      exit 0 ;;
    release) exit 0 ;;  # what setup.sh reserved stays reserved
  esac
fi

case "${1:-status}" in
  reserve)
    want=${2:-${NVMUX_HUGEPAGES:-1024}}
    [[ "$want" =~ ^[0-9]+$ ]] || { echo "hugepages.sh: bad page count '$want': expected a number of 2 MiB pages" >&2; exit 2; }
    before=$(cat "$nr")
    mounted_by_us=0
    if ! hugetlbfs_mounted; then
      mkdir -p "$mountpoint"
      mount -t hugetlbfs nodev "$mountpoint"
      mounted_by_us=1
    fi
    if [ ! -f "$state" ]; then
      echo "before=$before mounted_by_us=$mounted_by_us" > "$state"
    fi
    if [ "$before" -lt "$want" ]; then
      echo "$want" > "$nr"
      got=$(cat "$nr")
      if [ "$got" -lt "$want" ]; then
        echo "hugepages.sh: asked for $want hugepages, the kernel gave $got (memory too fragmented or too small)" >&2
        exit 1
      fi
    fi
    ;;
  release)
    [ -f "$state" ] || exit 0
    # shellcheck disable=SC1090
    eval "$(cat "$state")"
    echo "${before:-0}" > "$nr"
    if [ "${mounted_by_us:-0}" = 1 ] && [ -z "$(ls -A "$mountpoint" 2>/dev/null)" ]; then
      umount "$mountpoint" || true
    fi
    rm -f "$state"
    ;;
  status)
    status
    ;;
  *)
    echo "usage: hugepages.sh reserve [PAGES] | release | status" >&2
    exit 2
    ;;
esac
