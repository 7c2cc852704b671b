#!/bin/sh
# /init of the nvmet-tcp guest (busybox; nvmet_tcp_test.sh appends it to the
# cached guest): Linux's NVMe/TCP target (nvmet, nvmet-tcp) on brd RAM disks,
# configured through configfs, listening on tcp 0.0.0.0:4420 of a virtio-net
# NIC on QEMU's user-mode network (10.0.2.15; the host reaches it through a
# hostfwd from 127.0.0.1). The kernel command line names what to set:
#   nvmux.open=NQN     a subsystem any host may connect to: namespaces 1 and 2
#                      (/dev/ram0, /dev/ram1), nvmux.model/nvmux.serial
#   nvmux.closed=NQN   a subsystem only nvmux.host=NQN may connect to: one
#                      namespace (/dev/ram2)
# Prints GUEST-RESULT lines with what the target reports (sizes, its firmware
# revision: the kernel release) and `nvmet_ready=1`, then serves until QEMU
# is stopped. Kernel messages (nvmet's connect log) go to the console from then on.
. /lib/nvmux-guest.sh  # mounts, result/run/finish, modules (guest-common.sh)
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    nvmux.open=*) open=${arg#nvmux.open=} ;;
    nvmux.closed=*) closed=${arg#nvmux.closed=} ;;
    nvmux.host=*) host=${arg#nvmux.host=} ;;
    nvmux.model=*) model=${arg#nvmux.model=} ;;
    nvmux.serial=*) serial=${arg#nvmux.serial=} ;;
  esac
done
fatal() { result nvmet_ready=0 "reason=$1"; dmesg | tail -30; finish; }

# Three RAM disks of 32 MiB (the loader inserted brd with its defaults).
run rmmod brd
run insmod /lib/modules/brd.ko rd_nr=3 rd_size=32768 || fatal brd
result ram0_sectors=$(cat /sys/block/ram0/size) ram2_sectors=$(cat /sys/block/ram2/size)
result firmware=$(uname -r | cut -c1-8)  # nvmet reports the kernel release, cut to 8 bytes

# The NIC: QEMU's user-mode network gives the guest 10.0.2.15/24.
i=0
while [ $i -lt 100 ] && [ ! -e /sys/class/net/eth0 ]; do sleep 0.1; i=$((i + 1)); done
[ -e /sys/class/net/eth0 ] || fatal no-eth0
run ip link set lo up
run ip link set eth0 up
run ip addr add 10.0.2.15/24 dev eth0

run mount -t configfs none /sys/kernel/config || fatal configfs
cfg=/sys/kernel/config/nvmet
# Each configfs step, or the reason it failed (the kernel's words on stderr).
mk() { mkdir "$1" || fatal "mkdir:$1"; }
put() { echo "$1" >"$2" || fatal "write:$2"; }
lnk() { ln -s "$1" "$2" || fatal "link:$2"; }
namespace() {  # subsystem nsid device uuid
  mk $cfg/subsystems/$1/namespaces/$2
  put $3 $cfg/subsystems/$1/namespaces/$2/device_path
  put $4 $cfg/subsystems/$1/namespaces/$2/device_uuid
  put 1 $cfg/subsystems/$1/namespaces/$2/enable
}
echo "GUEST-RUN configfs: subsystem $open (any host; model $model, serial $serial; ram0, ram1)"
mk $cfg/subsystems/$open
put 1 $cfg/subsystems/$open/attr_allow_any_host
put "$model" $cfg/subsystems/$open/attr_model
put "$serial" $cfg/subsystems/$open/attr_serial
namespace $open 1 /dev/ram0 6e766d75-7800-4000-8000-000000000001
namespace $open 2 /dev/ram1 6e766d75-7800-4000-8000-000000000002
echo "GUEST-RUN configfs: subsystem $closed (only host $host; ram2)"
mk $cfg/subsystems/$closed
put 0 $cfg/subsystems/$closed/attr_allow_any_host
mk $cfg/hosts/$host
lnk $cfg/hosts/$host $cfg/subsystems/$closed/allowed_hosts/$host
namespace $closed 1 /dev/ram2 6e766d75-7800-4000-8000-000000000003
echo "GUEST-RUN configfs: port 1 tcp ipv4 0.0.0.0:4420 (in-capsule data 8 KiB) with both subsystems"
mk $cfg/ports/1
put tcp $cfg/ports/1/addr_trtype
put ipv4 $cfg/ports/1/addr_adrfam
put 0.0.0.0 $cfg/ports/1/addr_traddr
put 4420 $cfg/ports/1/addr_trsvcid
# In-capsule data up to 8 KiB (IOCCSZ): 4 KiB writes travel in the command
# capsule, 128 KiB writes by R2T and H2CData.
put 8192 $cfg/ports/1/param_inline_data_size
lnk $cfg/subsystems/$open $cfg/ports/1/subsystems/$open
lnk $cfg/subsystems/$closed $cfg/ports/1/subsystems/$closed
dmesg | grep -i nvmet
echo 7 >/proc/sys/kernel/printk  # nvmet's connect and error messages on the console
result nvmet_ready=1 uptime=$(cut -d' ' -f1 /proc/uptime)
while :; do sleep 3600; done
