#!/usr/bin/env bash
# Fails (and lists them) if nvmux left anything behind: processes, DPDK
# runtime directories, hugepage files, test lock files or sockets.
#
#   check-leftovers.sh                    everything found is a leftover
#   check-leftovers.sh record FILE        notes what is there before a run
#   check-leftovers.sh FILE               only what is not in FILE counts
#
# The test suite records at its start and checks at its end, so it answers
# for what it left itself: what an earlier, killed run left is listed apart
# ("before this run") and does not fail this one.
set -uo pipefail

# One line per thing found (a process by pid and command line: one that was
# there before matches only itself).
list() {
  while read -r pid prog args; do
    case "${prog##*/}" in
      nvmuxd|nvmux-*|nvmux_*) echo "process $pid: $prog $args" ;;
    esac
  done < <(ps -eo pid=,args=)
  for d in /var/run/dpdk/nvmux*; do [ -e "$d" ] && echo "runtime directory $d"; done
  while read -r mount; do
    for f in "$mount"/nvmux*; do [ -e "$f" ] && echo "hugepage file $f"; done
  done < <(awk '$3 == "hugetlbfs" { print $2 }' /proc/mounts)
  for f in /tmp/nvmux-*; do [ -e "$f" ] && echo "temporary file $f"; done
  find /tmp /var/run -maxdepth 3 -type s -path '*nvmux*' 2>/dev/null | sed 's/^/socket /'
}

if [ "${1:-}" = record ]; then
  [ -n "${2:-}" ] || { echo "check-leftovers.sh: record needs a file" >&2; exit 2; }
  list > "$2"
  [ -s "$2" ] && sed 's/^/there before this run (not counted): /' "$2"
  exit 0
fi
baseline=${1:-/dev/null}
[ -e "$baseline" ] || baseline=/dev/null

found=0
while read -r line; do
  [ -n "$line" ] || continue
  if grep -qxF -- "$line" "$baseline"; then
    echo "there before this run (not counted): $line"
  else
    echo "leftover: $line"
    found=1
  fi
done < <(list)

if [ "$found" -eq 0 ]; then
  echo "no leftovers of this run: no nvmux processes, runtime directories, hugepage files or sockets"
fi
exit "$found"
