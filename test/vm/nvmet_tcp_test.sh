#!/bin/bash
# nvmux's tools on the host against Linux's own NVMe/TCP target (nvmet-tcp)
# in a QEMU TCG guest, reached through QEMU's user-mode network forwarding
# from 127.0.0.1:PORT to the guest's 4420 (issue 13). One boot serves every
# step; each prints what it runs. See test/vm/README.md. Besides standalone
# tools, a group: nvmuxd owns the controller, secondaries' admin commands go
# through it, their I/O queues are their own connections, and one killed
# under I/O is reaped.
#
# Last, QEMU is killed under nvmux-perf's I/O (the target gone).
#
# Usage: nvmet_tcp_test.sh --identify BIN --perf BIN --manage BIN --nvmuxd BIN --cache DIR
# Env:   NVMUX_QEMU_DIR (as pcie_test.sh); NVMUX_GUEST_KEEP=1 keeps the logs.
# Exit:  0 pass, 1 fail, 77 skipped (no QEMU).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
identify= perf= manage= nvmuxd= cache=
while [ $# -gt 0 ]; do
  case "$1" in
    --identify) identify=$2; shift 2 ;;
    --perf) perf=$2; shift 2 ;;
    --manage) manage=$2; shift 2 ;;
    --nvmuxd) nvmuxd=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    *) echo "nvmet_tcp_test: unknown argument '$1' (allowed: --identify BIN --perf BIN --manage BIN --nvmuxd BIN --cache DIR)" >&2
       exit 2 ;;
  esac
done
[ -x "$identify" ] && [ -x "$perf" ] && [ -x "$manage" ] && [ -x "$nvmuxd" ] && [ -n "$cache" ] ||
  { echo "nvmet_tcp_test: need --identify BIN --perf BIN --manage BIN --nvmuxd BIN --cache DIR" >&2; exit 2; }

. "$here/vm-lib.sh"
vm_find_qemu "$root"
"$here/build-guest.sh" "$cache" || { echo "FAIL: building the guest"; exit 1; }

tmp=$(mktemp -d /tmp/nvmux-nvmet-guest.XXXXXX)
serial=$tmp/serial.log
qemu_pid=
daemon_pid=
gid=$((700000 + $$ % 90000))
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  [ -n "$daemon_pid" ] && "$manage" cleanup -i "$gid" --yes >/dev/null 2>&1
  [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  if [ "${NVMUX_GUEST_KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

vm_initramfs "$cache" "$here/nvmet-guest-init.sh" "$tmp/initramfs.cpio.gz"

# What the guest configures: a subsystem for any host (two namespaces, model
# and serial set), one for a single host NQN (one namespace).
open=nqn.2026-12.io.nvmux:nvmet-open closed=nqn.2026-12.io.nvmux:nvmet-closed
allowed=nqn.2014-08.org.nvmexpress:uuid:6e766d75-7800-4000-8000-0000000a110d
model=NVMUX-NVMET-MODEL serial_no=NVMUXNVMET0001
# A free port on 127.0.0.1 for the forwarding (bound, then released).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
qemu_cmd=("$qemu" "${qemu_share[@]}" -accel tcg -machine q35 -smp 2 -m 512M -cpu max
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-10.0.2.15:4420" -device virtio-net-pci,netdev=n0
  -kernel "$cache/vmlinux" -initrd "$tmp/initramfs.cpio.gz"
  -append "console=ttyS0 quiet panic=-1 no_timer_check nvmux.open=$open nvmux.closed=$closed nvmux.host=$allowed nvmux.model=$model nvmux.serial=$serial_no"
  -display none -nodefaults -no-reboot -serial "file:$serial")
echo "RUN: ${qemu_cmd[*]}"
start=$SECONDS
"${qemu_cmd[@]}" >"$tmp/qemu.log" 2>&1 &
qemu_pid=$!
if ! vm_wait_serial '^GUEST-RESULT nvmet_ready=' "$qemu_pid" 180 || [ "$(result nvmet_ready)" != 1 ]; then
  fail "the guest's nvmet did not come up (nvmet_ready='$(result nvmet_ready)' after $((SECONDS - start)) s)"
  vm_logs
  exit 1
fi
pass "nvmet-tcp serves in the guest after $((SECONDS - start)) s, forwarded from 127.0.0.1:$port"

# One step: prints what runs, keeps its output in $tmp/NAME.out, returns its exit code.
step() {  # NAME COMMAND...
  local name=$1
  shift
  echo "RUN: $*"
  timeout 120 "$@" >"$tmp/$name.out" 2>&1
  step_rc=$?
  return $step_rc
}
has() { grep -qF -- "$2" "$tmp/$1.out"; }
show() { sed 's/^/     | /' "$tmp/$1.out"; }
field() { sed -n "s/^ *$2: *//p" "$tmp/$1.out" | head -1 | sed 's/ *$//'; }
base="trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:$port"

# 1. The discovery service that comes with the port: its log lists what this
# host may reach (the closed subsystem only for its host NQN).
if step disc "$manage" discover -r "$base"; then
  show disc
  # Linux 6.1's log also holds an entry for the discovery subsystem itself;
  # its traddr is the guest's own (10.0.2.15), never connected to from here.
  has disc "Discovery Log Number of Records 2," && has disc "subtype: current discovery subsystem" &&
    pass "the log has 2 records (the discovery subsystem itself and one NVM subsystem)" ||
    fail "discover: expected 2 records, one the current discovery subsystem"
  has disc "subnqn:  $open" && pass "discover lists $open" || fail "discover does not list $open"
  has disc "$closed" && fail "discover lists $closed to a host it does not allow" ||
    pass "discover hides $closed from a host it does not allow"
else
  show disc; fail "nvmux-manage discover (exit $step_rc)"
fi
if step disc2 "$manage" discover -r "$base hostnqn:$allowed"; then
  has disc2 "Discovery Log Number of Records 3," && has disc2 "subnqn:  $closed" && pass "discover with hostnqn:$allowed lists $closed" ||
    { show disc2; fail "discover with the allowed host NQN does not list $closed"; }
else
  show disc2; fail "nvmux-manage discover with hostnqn (exit $step_rc)"
fi

# 2. Identify: what configfs set (model, serial), what nvmet reports on its
# own (firmware: the kernel release, 8 bytes), the namespaces' sizes.
ram_blocks=$(result ram0_sectors)  # brd's 512-byte sectors; nvmet uses its 512-byte block size
if step id "$identify" -r "$base subnqn:$open"; then
  [ "$(field id 'Model Number')" = "$model" ] && pass "model as configfs set it ($model)" ||
    fail "model: nvmux '$(field id 'Model Number')', configfs '$model'"
  [ "$(field id 'Serial Number')" = "$serial_no" ] && pass "serial as configfs set it ($serial_no)" ||
    fail "serial: nvmux '$(field id 'Serial Number')', configfs '$serial_no'"
  fw=$(result firmware)
  [ -n "$fw" ] && [ "$(field id 'Firmware Version')" = "$fw" ] && pass "firmware revision: the guest's kernel release ($fw)" ||
    fail "firmware: nvmux '$(field id 'Firmware Version')', guest kernel '$fw'"
  [ "$(field id 'Subsystem NQN')" = "$open" ] && pass "subsystem NQN $open" ||
    fail "subsystem NQN: '$(field id 'Subsystem NQN')'"
  sizes=$(sed -n 's/^ *Namespace Size (in LBAs): *\([0-9]*\).*/\1/p' "$tmp/id.out" | tr '\n' ,)
  [ "$sizes" = "$ram_blocks,$ram_blocks," ] && pass "two namespaces of $ram_blocks blocks (brd's size)" ||
    fail "namespace sizes '$sizes', expected two of '$ram_blocks'"
  uuids=$(sed -n 's/^ *UUID: *//p' "$tmp/id.out" | tr '\n' ,)
  [ "$uuids" = "6e766d75-7800-4000-8000-000000000001,6e766d75-7800-4000-8000-000000000002," ] &&
    pass "namespace UUIDs as configfs set them" || fail "namespace UUIDs '$uuids'"
else
  show id; fail "nvmux-identify (exit $step_rc)"
fi

# 3. Verified I/O: 4 KiB writes in the capsule, 128 KiB by R2T/H2CData (the
# port's in-capsule limit is 8 KiB), reads by C2HData; then with header and
# data digests (CRC32C) on both queues.
perf_step() {  # NAME DESCRIPTION PERF-ARGS...
  local name=$1 what=$2 total
  shift 2
  if step "$name" env NVMUX_LOG_LEVEL=info "$perf" -r "$base subnqn:$open" "$@" --verify --no-live --json; then
    total=$(sed -n 's/.*"total":{"ios":\([0-9]*\).*/\1/p' "$tmp/$name.out" | head -1)
    [ "${total:-0}" -gt 0 ] && pass "$what ($total verified I/Os)" || { show "$name"; fail "$what: no I/O counted"; }
  else
    show "$name"; fail "$what (exit $step_rc)"
  fi
}
perf_step p4k "nvmux-perf --verify 4 KiB randrw QD16, 2 queue pairs per namespace (in-capsule writes)" \
  -q 16 -o 4k -w randrw -M 50 -t 2 -P 2
perf_step p128k "nvmux-perf --verify 128 KiB randrw QD8 (writes by R2T)" -q 8 -o 128k -w randrw -M 50 -t 2
perf_step pdig "nvmux-perf --verify 4 KiB and digests (-H -I)" -q 8 -o 4k -w randrw -M 50 -t 2 -H -I
perf_step pdig128 "nvmux-perf --verify 128 KiB and digests (-H -I)" -q 4 -o 128k -w randrw -M 50 -t 2 -H -I
# Every I/O queue pair is its own connection with its own Connect: 2
# namespaces x 2 queue pairs, and the admin queue, once: the shutdown at
# detach (CC.SHN) goes to the same association (nvmux once opened a new
# admin connection for it, a second controller on the target).
n=$(grep -c 'connected (cntlid' "$tmp/p4k.out")
[ "$n" = 5 ] && pass "-P 2: 4 I/O queues and the admin queue each connected once" ||
  { grep connected "$tmp/p4k.out"; fail "-P 2: $n queues connected, expected 5"; }
for s in pdig pdig128; do
  if has $s "queue 1: connected" && ! grep -q 'digests [^ ]*-' "$tmp/$s.out"; then
    pass "$s: both queues negotiated header and data digests"
  else
    grep connected "$tmp/$s.out"; fail "$s: digests not negotiated on every queue"
  fi
done
grep -h 'connected (cntlid' "$tmp/pdig.out" | head -2 | sed 's/^/     | /'

# 3b. The group: nvmuxd owns the controller's admin connection; secondaries'
# admin commands go through the shared admin ring (nvmuxd's connection sends
# them), their I/O queues are their own connections; a secondary killed
# under I/O is reaped (the target drops its connections, its queue ids come
# back) and the next secondary's verified I/O runs.
echo "RUN: $nvmuxd -i $gid -r '$base subnqn:$open' &"
"$nvmuxd" -i "$gid" -r "$base subnqn:$open" >"$tmp/nvmuxd.out" 2>&1 &
daemon_pid=$!
for _ in $(seq 600); do grep -q "nvmuxd: group $gid ready" "$tmp/nvmuxd.out" && break; sleep 0.05; done
if grep -q "nvmuxd: group $gid ready" "$tmp/nvmuxd.out"; then
  pass "nvmuxd -i $gid owns $open"
  if step gid "$identify" -i "$gid"; then
    [ "$(field gid 'Model Number')" = "$model" ] && pass "nvmux-identify -i $gid (a secondary, admin through nvmuxd)" ||
      { show gid; fail "nvmux-identify -i $gid: model '$(field gid 'Model Number')'"; }
  else
    show gid; fail "nvmux-identify -i $gid (exit $step_rc)"
  fi
  echo "RUN: $perf -i $gid -q 8 -o 4k -w randrw -M 50 -t 60 --verify --no-live &  (then kill -9 mid-I/O)"
  "$perf" -i "$gid" -q 8 -o 4k -w randrw -M 50 -t 60 --verify --no-live >"$tmp/gvictim.out" 2>&1 &
  victim=$!
  for _ in $(seq 300); do grep -q 'Initialization complete' "$tmp/gvictim.out" && break; sleep 0.1; done
  sleep 1
  kill -9 "$victim" 2>/dev/null; wait "$victim" 2>/dev/null
  reaped=0
  for _ in $(seq 100); do
    "$manage" status -i "$gid" >"$tmp/gstatus.out" 2>&1
    grep -q 'I/O queues: none in use' "$tmp/gstatus.out" && { reaped=1; break; }
    sleep 0.1
  done
  [ "$reaped" = 1 ] && pass "a secondary killed under I/O was reaped (no I/O queue id left in use)" ||
    { show gstatus; fail "the killed secondary's queue ids are still in use"; }
  if step gperf "$perf" -i "$gid" -q 16 -o 4k -w randrw -M 50 -t 2 -P 2 --verify --no-live --json; then
    total=$(sed -n 's/.*"total":{"ios":\([0-9]*\).*/\1/p' "$tmp/gperf.out" | head -1)
    [ "${total:-0}" -gt 0 ] && pass "nvmux-perf -i $gid --verify, own connections, after the kill ($total verified I/Os)" ||
      { show gperf; fail "nvmux-perf -i $gid: no I/O counted"; }
  else
    show gperf; fail "nvmux-perf -i $gid --verify (exit $step_rc)"
  fi
  kill -TERM "$daemon_pid"
  for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$daemon_pid" 2>/dev/null; then fail "nvmuxd did not stop on SIGTERM"; else
    wait "$daemon_pid"; rc=$?
    [ "$rc" = 0 ] && pass "nvmuxd stopped cleanly" || { sed 's/^/     | /' "$tmp/nvmuxd.out"; fail "nvmuxd exit $rc"; }
  fi
  daemon_pid=
else
  sed 's/^/     | /' "$tmp/nvmuxd.out"; fail "nvmuxd -i $gid -r '$base subnqn:$open' did not become ready"
fi

# 4. Connect refused: the status decoded.
if step wrong "$identify" -r "$base subnqn:nqn.2026-12.io.nvmux:nope"; then
  fail "a wrong subnqn connected"
else
  has wrong "refused: status 1/0x82 (invalid parameters: subnqn)" && pass "a wrong subnqn: Connect status decoded" ||
    { show wrong; fail "a wrong subnqn: no decoded Connect status"; }
fi
if step denied "$identify" -r "$base subnqn:$closed"; then
  fail "a host NQN the subsystem does not allow connected"
else
  has denied "refused: status 1/0x84 (invalid host" && pass "a host not allowed: Connect status decoded" ||
    { show denied; fail "a host not allowed: no decoded Connect status"; }
fi
if step allowed "$identify" -r "$base subnqn:$closed hostnqn:$allowed"; then
  [ "$(field allowed 'Subsystem NQN')" = "$closed" ] && pass "the allowed host NQN connects to $closed" ||
    { show allowed; fail "the allowed host: subsystem NQN '$(field allowed 'Subsystem NQN')'"; }
else
  show allowed; fail "the allowed host NQN (exit $step_rc)"
fi

# 5. The target's side: it saw the refused host, and no transport errors.
# Disconnect (fabrics opcode 0x7f, FCTYPE 08h) is optional in the fabrics
# command set and Linux 6.1's nvmet does not implement it: it answers Invalid
# Opcode, which nvmux takes as "not implemented" before closing the queue's
# connection, and logs "failed cmd ... opcode 127, data_len: 0" for each I/O
# queue. Those lines are counted, not errors (test/vm/README.md).
grep -q "nvmet: connect by host .* for subsystem $closed not allowed" "$serial" &&
  pass "nvmet logged the refused host" || fail "nvmet did not log the refused host"
echo "     nvmet refused $(grep -c 'nvmet_tcp: failed cmd .* opcode 127, data_len: 0' "$serial") Disconnect commands (optional; not implemented there)"
if grep -i -e 'nvmet_tcp:.*\(error\|failed\|unexpected\|digest\)' "$serial" | grep -v 'opcode 127, data_len: 0' | grep -q .; then
  grep -i 'nvmet_tcp:' "$serial"; fail "nvmet-tcp logged transport errors"
else
  pass "nvmet-tcp logged no transport errors"
fi
# 6. The target goes away under I/O: QEMU is killed (SIGKILL), so the
# forwarded connections are cut. nvmux-perf must end with an error (not hang,
# not die of a signal) and say that the connection was lost.
echo "RUN: $perf -r '$base subnqn:$open' -q 8 -o 4k -w randrw -M 50 -t 60 --no-live &  (then kill -9 QEMU)"
"$perf" -r "$base subnqn:$open" -q 8 -o 4k -w randrw -M 50 -t 60 --no-live >"$tmp/lost.out" 2>&1 &
perf_pid=$!
for _ in $(seq 100); do grep -q 'Launching workers' "$tmp/lost.out" && break; sleep 0.2; done
sleep 1
kill -9 "$qemu_pid"; wait "$qemu_pid" 2>/dev/null; qemu_pid=
echo "     the guest ran $((SECONDS - start)) s"
lost_at=$SECONDS
for _ in $(seq 300); do kill -0 $perf_pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $perf_pid 2>/dev/null; then
  kill -9 $perf_pid; wait $perf_pid 2>/dev/null
  show lost; fail "nvmux-perf still ran 30 s after the target went away"
else
  wait $perf_pid; rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ]; then
    pass "the target killed under I/O: nvmux-perf ended in $((SECONDS - lost_at)) s with exit $rc"
    grep -i -m3 -e 'lost\|reset\|ENXIO\|closed' "$tmp/lost.out" | sed 's/^/     | /'
  else
    show lost; fail "the target killed under I/O: nvmux-perf exit $rc (expected an error exit < 128)"
  fi
fi
if [ $failures != 0 ]; then
  vm_logs
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
