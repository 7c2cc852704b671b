#!/usr/bin/env bash
# Soak (issue 14; outside CI, stops by itself): secondaries doing verified
# writes and reads on disjoint LBA ranges of one nvmux-emu controller are
# killed with SIGKILL at random moments, N times (default 10,000): while
# doing I/O (half of them also reading the SMART log every 25 ms), while
# attaching, and while issuing admin commands (Identify, SMART log, queue
# creation and deletion through the shared admin queue);
# nvmuxd itself is killed and restarted (a takeover) every 500 kills. At the
# end: every surviving secondary is stopped and must report clean verified
# I/O, then a census (queue ids in use, DMA records and DPDK's shared heap
# against the start's, admin commands in flight, the device's I/O queues
# from the emulator's `status`), and a full write and read-back of every
# range. Prints the figures; exit 0 only with zero failures, mismatches and
# leaks.
#
#   scripts/soak.sh [--kills N] [--secondaries K] [--group G] [BUILD_DIR]
#
# Needs a build with the test helpers (build/test/multiprocess/nvmux_mp_child)
# and hugepages (scripts/hugepages.sh reserve). Goal: 10,000 kills in under
# an hour. Runs as root or as a user set up by scripts/setup.sh user.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kills=10000
secondaries=4
group=$((990000 + $$ % 9000))
build="$root/build"
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills=${2:?}; shift 2 ;;
    --secondaries) secondaries=${2:?}; shift 2 ;;
    --group) group=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "soak.sh: unknown option '$1' (allowed: --kills N, --secondaries K, --group G)" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
[[ "$kills" =~ ^[0-9]+$ ]] && [ "$kills" -ge 1 ] || { echo "soak.sh: bad --kills '$kills': a count >= 1" >&2; exit 2; }
[[ "$secondaries" =~ ^[0-9]+$ ]] && [ "$secondaries" -ge 1 ] && [ "$secondaries" -le 16 ] ||
  { echo "soak.sh: bad --secondaries '$secondaries': allowed 1..16" >&2; exit 2; }

mp="$build/test/multiprocess/nvmux_mp_child"
emu="$build/tools/emu/nvmux-emu"
nvmuxd="$build/primary/nvmuxd"
manage="$build/tools/manage/nvmux-manage"
for b in "$mp" "$emu" "$nvmuxd" "$manage"; do
  [ -x "$b" ] || { echo "soak.sh: $b is missing: build it (ninja -C $build nvmux_mp_child nvmux-emu nvmuxd nvmux-manage)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/nvmux-soak.XXXXXX)
range=2048            # blocks of 512 bytes per secondary: 1 MiB
trid="trtype:vfiouser traddr:$work/emu"
emu_pid=""
daemon_pid=""
declare -a slot_pid
failures=0
mismatches=0
declare -A killed=([io]=0 [attach]=0 [admin]=0)
restarts=0
admin_done=0
attach_early=0   # attach kills that hit before the child printed "ready"
refused=0        # children refused because they joined while nvmuxd was down

fail() {  # what, log file
  failures=$((failures + 1))
  echo "FAILURE: $1" >&2
  [ -n "${2:-}" ] && [ -s "$2" ] && sed 's/^/    /' "$2" | tail -5 >&2
  if [ -n "${2:-}" ] && grep -q "mismatch" "$2" 2>/dev/null; then mismatches=$((mismatches + 1)); fi
}

stop_all() {
  trap - EXIT INT TERM
  for pid in "${slot_pid[@]}"; do [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; done
  # TERM, then KILL after 5 s: a process stuck at start (in DPDK's init)
  # may have its TERM handler installed and never look at it.
  for pid in "$daemon_pid" "$emu_pid"; do
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  "$manage" cleanup -i "$group" --yes >/dev/null 2>&1
  rm -rf "$work"
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

emu_status() {
  python3 - "$work/emu/control" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"status\n")
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode().strip())
PY
}

start_daemon() {
  local log="$work/nvmuxd.$restarts.log"
  "$nvmuxd" -i "$group" -r "$trid" > "$log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 600); do grep -q "nvmuxd: group $group ready" "$log" 2>/dev/null && return 0; sleep 0.05; done
  echo "soak.sh: nvmuxd did not become ready:" >&2
  cat "$log" >&2
  exit 1
}

census() { "$mp" census -i "$group" 2>&1; }
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

spawn_io() {  # slot
  local k=$1 admin=()
  # Odd slots also read the SMART log every 25 ms through the shared admin
  # queue, so kills land in admin commands in flight too.
  [ $((k % 2)) -eq 1 ] && admin=(--admin-ms 25)
  "$mp" io -i "$group" -r "$trid" --lba $((k * range)) --blocks "$range" --seconds 1000000 --qd 4 "${admin[@]}" \
    > "$work/io.$k.out" 2> "$work/io.$k.err" &
  slot_pid[$k]=$!
}

# A child that was joining when nvmuxd was killed for a restart is refused
# ("the primary ... is not running"), as designed: counted, not a failure.
refused_by_restart() {  # status log
  if [ "$1" -eq 1 ] && grep -q "the primary of group $group is not running" "$2" 2>/dev/null; then
    refused=$((refused + 1))
    return 0
  fi
  return 1
}

# Reaps `pid` after a SIGKILL (or finds it exited by itself: a failure).
kill_and_check() {  # pid kind log
  local pid=$1 kind=$2 log=$3 st
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  st=$?
  if [ "$st" -eq 137 ]; then
    killed[$kind]=$((killed[$kind] + 1))
  elif refused_by_restart "$st" "$log"; then
    killed[$kind]=$((killed[$kind] + 1))
  elif [ "$kind" = admin ] && [ "$st" -eq 0 ]; then
    admin_done=$((admin_done + 1))   # finished before the kill
    killed[$kind]=$((killed[$kind] + 1))
  else
    fail "$kind child $pid exited by itself with status $st" "$log"
    killed[$kind]=$((killed[$kind] + 1))
  fi
}

rand_sleep() {  # max ms
  local ms=$((RANDOM % $1))
  sleep "$(printf '0.%03d' "$ms")"
}

echo "soak: group $group, $secondaries secondaries x $range blocks, $kills kills, nvmuxd restarted every 500 (work dir $work)"
mkdir -p "$work/emu"
"$emu" --socket "$work/emu" --ns size=64M > "$work/emu.log" 2>&1 &
emu_pid=$!
for _ in $(seq 200); do [ -S "$work/emu/cntrl" ] && break; sleep 0.05; done
[ -S "$work/emu/cntrl" ] || { echo "soak.sh: nvmux-emu did not come up:" >&2; cat "$work/emu.log" >&2; exit 1; }
start_daemon
before=$(census)
field "$before" 'd["qids"]' >/dev/null 2>&1 || { echo "soak.sh: census failed: $before" >&2; exit 1; }

for ((k = 0; k < secondaries; k++)); do spawn_io "$k"; done
start_ns=$(date +%s%N)
total=0
next_report=100
while [ "$total" -lt "$kills" ]; do
  k=$((RANDOM % secondaries))
  r=$((RANDOM % 10))
  if [ "$r" -lt 6 ]; then
    rand_sleep 250                              # in the middle of its verified I/O
    kill_and_check "${slot_pid[$k]}" io "$work/io.$k.err"
    spawn_io "$k"
  elif [ "$r" -lt 8 ]; then
    kill_and_check "${slot_pid[$k]}" io "$work/io.$k.err"
    spawn_io "$k"
    rand_sleep 120                              # while it joins, connects, creates its queue
    grep -q "^ready" "$work/io.$k.out" 2>/dev/null || attach_early=$((attach_early + 1))
    kill_and_check "${slot_pid[$k]}" attach "$work/io.$k.err"
    spawn_io "$k"
  else
    "$mp" admin -i "$group" -r "$trid" > "$work/admin.out" 2> "$work/admin.err" &
    apid=$!
    rand_sleep 200                              # while its admin commands are in flight
    kill_and_check "$apid" admin "$work/admin.err"
  fi
  total=$((killed[io] + killed[attach] + killed[admin]))
  if [ $((total / 500)) -gt "$restarts" ]; then
    kill -0 "$daemon_pid" 2>/dev/null || fail "nvmuxd (pid $daemon_pid) died by itself" "$work/nvmuxd.$restarts.log"
    kill -KILL "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null
    restarts=$((restarts + 1))
    start_daemon                                # takes the running group over
  fi
  if [ "$total" -ge "$next_report" ]; then
    next_report=$((next_report + 100))
    echo "  $total kills ($(( ($(date +%s%N) - start_ns) / 1000000000 )) s), $restarts nvmuxd restarts, $failures failures"
  fi
done
elapsed_s=$(( ($(date +%s%N) - start_ns) / 1000000 ))

echo "soak: stopping the secondaries (each must report clean verified I/O)"
for ((k = 0; k < secondaries; k++)); do
  pid=${slot_pid[$k]}
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  st=$?
  if grep -q "^done" "$work/io.$k.out" && [ "$st" -eq 0 ]; then :
  elif refused_by_restart "$st" "$work/io.$k.err"; then :
  else fail "secondary $k (pid $pid) stopped with status $st" "$work/io.$k.err"; fi
  slot_pid[$k]=""
done

echo "soak: census (waiting for the reaper)"
leak=""
for _ in $(seq 100); do
  after=$(census)
  leak=$(python3 - "$before" "$after" <<'PY'
import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = []
if a["qids"]: out.append("queue ids still in use: %s" % a["qids"])
if a["dma_records"] != b["dma_records"]: out.append("DMA records %d -> %d" % (b["dma_records"], a["dma_records"]))
if a["dma_bytes"] != b["dma_bytes"]: out.append("DMA bytes %d -> %d" % (b["dma_bytes"], a["dma_bytes"]))
if a["admin_in_flight"] != b["admin_in_flight"]: out.append("admin in flight %s -> %s" % (b["admin_in_flight"], a["admin_in_flight"]))
print("; ".join(out))
PY
)
  [ -z "$leak" ] && break
  sleep 0.1
done
device=$(emu_status)
heap=$(python3 -c 'import json,sys; b,a=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print("%d -> %d allocations, %d -> %d bytes" % (b["heap_allocations"], a["heap_allocations"], b["heap_bytes"], a["heap_bytes"]))' "$before" "$after" 2>/dev/null)
[ -n "$leak" ] && fail "census: $leak"
case "$device" in
  *" io_sqs=0 io_cqs=0 "*) ;;
  *) fail "the device still has I/O queues: $device" ;;
esac

echo "soak: full write and read-back of every range"
for ((k = 0; k < secondaries; k++)); do
  "$mp" fill -i "$group" -r "$trid" --lba $((k * range)) --blocks "$range" --seed $((7 + k)) > "$work/fill.out" 2>&1 ||
    fail "fill of range $k" "$work/fill.out"
done
for ((k = 0; k < secondaries; k++)); do
  "$mp" verify -i "$group" -r "$trid" --lba $((k * range)) --blocks "$range" --seed $((7 + k)) > "$work/verify.out" 2>&1 ||
    fail "read-back of range $k" "$work/verify.out"
done

kill -TERM "$daemon_pid"; wait "$daemon_pid" 2>/dev/null; daemon_pid=""
kill -TERM "$emu_pid"; wait "$emu_pid" 2>/dev/null; emu_pid=""
left=$("$manage" status -i "$group" 2>&1 | head -1)

total=$((killed[io] + killed[attach] + killed[admin]))
echo "soak: results"
echo "  kills:            $total (during I/O ${killed[io]}, while attaching ${killed[attach]} (before its queue was ready: $attach_early), admin ${killed[admin]}, of which $admin_done finished first)"
echo "  nvmuxd restarts:  $restarts (kill -9, then a takeover); $refused secondaries refused as they joined while it was down"
echo "  time:             $((elapsed_s / 1000)).$(printf %03d $((elapsed_s % 1000))) s, $(python3 -c "print(round($total / max($elapsed_s, 1) * 1000, 2))") kills/s"
echo "  failures:         $failures (of which data mismatches: $mismatches)"
echo "  census:           ${leak:-no queue id, DMA record or admin command left}; DPDK heap ${heap:-?}"
echo "  device:           $device"
echo "  afterwards:       $left"
[ "$failures" -eq 0 ]
