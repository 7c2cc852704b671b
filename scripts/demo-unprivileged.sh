#!/usr/bin/env bash
# The main job (scripts/demo.sh) as an unprivileged user, on this clone and an
# existing build: what CI runs once (issue 14), and a check an operator can run.
# As root:
#   1. if `scripts/setup.sh check USER` fails, runs `scripts/setup.sh user USER`
#      and notes that it did, to undo it at the end (the user, its Unix group,
#      the hugetlbfs mount, the hugepage count, the files in /etc);
#   2. lets USER read the clone with POSIX ACL entries (u:USER), including on
#      ancestor directories USER cannot traverse (a clone under /root), and
#      hands the build directory over (chown: CMake sets the modes of the
#      files it configures, which only their owner may); at the end the ACL
#      entries come off and the build goes back to its owner;
#   3. runs `scripts/demo.sh GROUP_ID` as USER through runuser (PAM: the
#      memlock limit of setup.sh applies), with NVMUX_BUILD_DIR=BUILD_DIR.
# Exit status: demo.sh's. Leaves nothing behind that it created.
#
#   scripts/demo-unprivileged.sh USER [BUILD_DIR] [GROUP_ID]
#       (defaults: build/ of this clone, group 77)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
user=${1:-}
build=${2:-$root/build}
group_id=${3:-77}
unix_group=nvmux
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
[ -n "$user" ] || usage
[[ "$user" =~ ^[a-z_][a-z0-9_-]*$ ]] || { echo "demo-unprivileged.sh: bad user name '$user'" >&2; exit 2; }
[[ "$group_id" =~ ^[0-9]+$ ]] || { echo "demo-unprivileged.sh: bad group id '$group_id': a number" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "demo-unprivileged.sh: needs root (it sets up USER and hands over the build)" >&2; exit 1; }
[ -x "$build/tools/perf/nvmux-perf" ] ||
  { echo "demo-unprivileged.sh: no build at $build: build first (cmake -S . -B build && cmake --build build)" >&2; exit 2; }
[ "$user" != root ] || { echo "demo-unprivileged.sh: USER must not be root" >&2; exit 2; }

# ACLs are the least intrusive way to hand a root-owned tree over: modes and
# owners stay as they are, and the entries come off again by name.
if ! command -v setfacl >/dev/null; then
  echo "demo-unprivileged.sh: installing acl (setfacl)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends acl >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends acl >/dev/null; }
fi

nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
did_setup=0
pages_before=$(cat "$nr")
user_existed=0; id "$user" >/dev/null 2>&1 && user_existed=1
group_existed=0; getent group "$unix_group" >/dev/null && group_existed=1
traversed=()
declare -A modes_before=()
build_owner=$(stat -c '%u:%g' "$build")
read_granted=0
# The run dirs setup.sh re-owns: their state before, to put back.
declare -A dir_before=()
for d in /var/run/dpdk /var/run/nvmux; do
  if [ -d "$d" ]; then dir_before[$d]=$(stat -c '%a %g' "$d"); else dir_before[$d]=absent; fi
done

undo() {
  local rc=$?
  trap - EXIT INT TERM
  for d in "${traversed[@]}"; do setfacl -x "u:$user" "$d" 2>/dev/null || true; done
  for d in "${!modes_before[@]}"; do chmod "${modes_before[$d]}" "$d"; done
  [ "$read_granted" = 0 ] || setfacl -R -x "u:$user" "$root" 2>/dev/null || true
  chown -R "$build_owner" "$build"
  if [ "$did_setup" = 1 ]; then
    umount "/dev/hugepages-$unix_group" 2>/dev/null && rmdir "/dev/hugepages-$unix_group" 2>/dev/null || true
    echo "$pages_before" > "$nr" || true
    rm -f /etc/security/limits.d/nvmux.conf /etc/tmpfiles.d/nvmux.conf
    for d in "${!dir_before[@]}"; do
      if [ "${dir_before[$d]}" = absent ]; then rmdir "$d" 2>/dev/null || true
      else chgrp "${dir_before[$d]#* }" "$d"; chmod "${dir_before[$d]% *}" "$d"; fi
    done
    [ "$user_existed" = 1 ] || userdel "$user" 2>/dev/null || true
    [ "$group_existed" = 1 ] || groupdel "$unix_group" 2>/dev/null || true
    echo "demo-unprivileged.sh: undid the set-up for $user"
  fi
  exit $rc
}
trap undo EXIT INT TERM

if ! "$root/scripts/setup.sh" check "$user" >/dev/null 2>&1; then
  did_setup=1
  "$root/scripts/setup.sh" user "$user" --pages "${NVMUX_HUGEPAGES:-1024}" >/dev/null
fi

# Every ancestor USER cannot traverse gets u:USER:x, the clone u:USER:rX; the
# build becomes USER's (demo.sh configures and builds it: nothing to rebuild).
d=$root
while [ "$d" != / ]; do
  d=$(dirname "$d")
  runuser -u "$user" -- test -x "$d" && continue
  # A file system without ACLs: o+x for the run, the mode restored after.
  if setfacl -m "u:$user:x" "$d" 2>/dev/null; then traversed+=("$d")
  else modes_before[$d]=$(stat -c '%a' "$d"); chmod o+x "$d"; fi
done
# A clone made with umask 022 is readable by all: no entries then.
if ! runuser -u "$user" -- sh -c "test -r '$root/CMakeLists.txt' && test -x '$root/scripts'"; then
  read_granted=1
  setfacl -R -m "u:$user:rX" "$root"
fi
chown -R "$user" "$build"

echo "== nvmux: the main job as $user (uid $(id -u "$user")), not root"
runuser -u "$user" -- env HOME=/tmp NVMUX_BUILD_DIR="$build" "$root/scripts/demo.sh" "$group_id"
