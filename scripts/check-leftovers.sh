#!/usr/bin/env bash
# Fails (and lists them) if nvmux left anything behind: processes, DPDK
# runtime directories, hugepage files, test lock files or sockets.
set -uo pipefail

found=0
report() { echo "leftover: $*"; found=1; }

# Processes whose program (argv[0], not an argument) is one of ours.
while read -r pid prog args; do
  case "${prog##*/}" in
    nvmuxd|nvmux-*|nvmux_*) report "process $pid: $prog $args" ;;
  esac
done < <(ps -eo pid=,args=)

for d in /var/run/dpdk/nvmux*; do [ -e "$d" ] && report "runtime directory $d"; done
while read -r mount; do
  for f in "$mount"/nvmux*; do [ -e "$f" ] && report "hugepage file $f"; done
done < <(awk '$3 == "hugetlbfs" { print $2 }' /proc/mounts)
for f in /tmp/nvmux-*; do [ -e "$f" ] && report "temporary file $f"; done
while read -r s; do
  [ -n "$s" ] && report "socket $s"
done < <(find /tmp /var/run -maxdepth 3 -type s -path '*nvmux*' 2>/dev/null)

if [ "$found" -eq 0 ]; then
  echo "no leftovers: no nvmux processes, runtime directories, hugepage files or sockets"
fi
exit "$found"
