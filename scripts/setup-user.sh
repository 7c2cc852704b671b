#!/usr/bin/env bash
# One-time set-up by root so that nvmux runs without root (issue 14); run
# through scripts/setup.sh user|check.
#
#   scripts/setup.sh user NAME [--group GROUP] [--pages N]
#       Installs what is missing (scripts/deps.sh), then lets user NAME (created as a system user if missing) run nvmuxd, every
#       tool, nvmux-emu, scripts/demo.sh and the test suite:
#        - Unix group GROUP (default nvmux, created if missing), NAME in it;
#        - N 2 MiB hugepages reserved (default $NVMUX_HUGEPAGES or 1024) and a
#          hugetlbfs mounted at /dev/hugepages-GROUP (gid GROUP, mode 0770),
#          which nvmuxd picks when it may not write the default mount;
#        - the run dir every user's groups live in, /var/run/dpdk, searchable
#          by all and writable by GROUP (mode 1775, sticky: users do not remove
#          each other's groups), kept across reboots by /etc/tmpfiles.d/nvmux.conf;
#        - /var/run/nvmux (2770, GROUP) for the emulator's sockets;
#        - an unlimited memlock limit for GROUP (/etc/security/limits.d/nvmux.conf,
#          applied to sessions opened by PAM: login, su, runuser, systemd).
#       Idempotent: run it again to check or repair.
#   scripts/setup.sh check NAME [--group GROUP]
#       Prints what NAME may use and what is missing; exit 1 if anything is.
#
# Other users may then join NAME's groups if nvmuxd runs with
# --access-group GROUP and they are members of GROUP.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

cmd=${1:-}
name=${2:-}
[ -n "$cmd" ] && [ -n "$name" ] || usage
shift 2
group=nvmux
pages=${NVMUX_HUGEPAGES:-1024}
while [ $# -gt 0 ]; do
  case "$1" in
    --group) group=${2:?--group needs a name}; shift 2 ;;
    --pages) pages=${2:?--pages needs a count}; shift 2 ;;
    *) echo "setup.sh: unknown option '$1' (allowed: --group GROUP, --pages N)" >&2; exit 2 ;;
  esac
done
[[ "$pages" =~ ^[0-9]+$ ]] || { echo "setup.sh: bad --pages '$pages': a number of 2 MiB pages" >&2; exit 2; }
[[ "$name" =~ ^[a-z_][a-z0-9_-]*$ ]] || { echo "setup.sh: bad user name '$name'" >&2; exit 2; }
[[ "$group" =~ ^[a-z_][a-z0-9_-]*$ ]] || { echo "setup.sh: bad group name '$group'" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
hugedir=/dev/hugepages-$group
rundir=/var/run/dpdk
emudir=/var/run/nvmux
nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

check() {
  local bad=0
  say() { printf '  %-4s %s\n' "$1" "$2"; [ "$1" = ok ] || bad=1; }
  echo "nvmux set-up for user $name, group $group:"
  if id "$name" >/dev/null 2>&1; then say ok "user $name exists"; else say MISS "user $name"; fi
  if id -nG "$name" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then say ok "$name is in group $group"; else say MISS "$name in group $group"; fi
  local free; free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)
  if [ "$(cat $nr)" -gt 0 ]; then say ok "$(cat $nr) hugepages reserved, $free free"; else say MISS "hugepages (none reserved)"; fi
  if awk -v d="$hugedir" '$2 == d && $3 == "hugetlbfs" { f = 1 } END { exit !f }' /proc/mounts; then
    say ok "hugetlbfs at $hugedir ($(stat -c '%A %U:%G' "$hugedir"))"
  else say MISS "hugetlbfs at $hugedir"; fi
  if [ -d "$rundir" ] && [ "$(stat -c %G "$rundir")" = "$group" ]; then say ok "run dir $rundir ($(stat -c '%A %U:%G' "$rundir"))"
  else say MISS "run dir $rundir writable by $group"; fi
  if [ -d "$emudir" ]; then say ok "emulator sockets $emudir ($(stat -c '%A %U:%G' "$emudir"))"; else say MISS "$emudir"; fi
  if [ -f /etc/security/limits.d/nvmux.conf ]; then say ok "memlock: $(grep -v '^#' /etc/security/limits.d/nvmux.conf | head -1)"
  else say MISS "memlock limit for $group"; fi
  return $bad
}

case "$cmd" in
  check) check; exit $? ;;
  user) ;;
  *) usage ;;
esac

[ "$(id -u)" -eq 0 ] || { echo "setup.sh user: needs root (it creates a group, mounts hugetlbfs, reserves hugepages)" >&2; exit 1; }

"$root/scripts/deps.sh"   # the service account cannot install packages
getent group "$group" >/dev/null || groupadd --system "$group"
if ! id "$name" >/dev/null 2>&1; then
  useradd --system --gid "$group" --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$name"
fi
id -nG "$name" | tr ' ' '\n' | grep -qx "$group" || usermod -a -G "$group" "$name"
gid=$(getent group "$group" | cut -d: -f3)

# Hugepages: reserved for good (the service account cannot reserve them).
if [ "$(cat $nr)" -lt "$pages" ]; then echo "$pages" > "$nr"; fi
mkdir -p "$hugedir"
if ! awk -v d="$hugedir" '$2 == d && $3 == "hugetlbfs" { f = 1 } END { exit !f }' /proc/mounts; then
  mount -t hugetlbfs -o "pagesize=2M,gid=$gid,mode=0770" nodev "$hugedir"
fi
# The run dir shared by every user (shm/group_paths.h) and the emulator's sockets.
mkdir -p "$rundir" "$emudir"
chgrp "$group" "$rundir" "$emudir"
chmod 1775 "$rundir"
chmod 2770 "$emudir"
mkdir -p /etc/tmpfiles.d /etc/security/limits.d
cat > /etc/tmpfiles.d/nvmux.conf <<EOT
# scripts/setup.sh user $name --group $group: nvmux's run dir and emulator sockets
d /run/dpdk 1775 root $group -
d /run/nvmux 2770 root $group -
EOT
cat > /etc/security/limits.d/nvmux.conf <<EOT
@$group - memlock unlimited
# written by nvmux scripts/setup.sh user $name
EOT
check
cat <<EOT
Done. As $name, for example the main job:
  runuser -u $name -- env HOME=/tmp NVMUX_BUILD_DIR=/tmp/nvmux-build-$name $root/scripts/demo.sh
  build/primary/nvmuxd -i 0 -r 'trtype:vfiouser traddr:$emudir/emu0'   (picks $hugedir itself)
Members of $group may join groups whose nvmuxd runs with --access-group $group.
EOT
