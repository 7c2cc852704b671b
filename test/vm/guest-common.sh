# Sourced by every test guest's /init (busybox sh; build-guest.sh installs
# it as /lib/nvmux-guest.sh in the base initramfs): mounts /proc, /sys and
# /dev, prints `GUEST-RESULT booted=1`, defines the reporting helpers and
# loads the modules build-guest.sh packed, in dependency order.
#   result key=value...  one GUEST-RESULT line for the host to assert
#   run CMD...           prints `GUEST-RUN CMD` (what ran) and runs it
#   finish               `GUEST-RESULT done=1`, sync, poweroff -f
# nvmux's programs and their libraries, when a test appends them, are in
# /nvmux/bin and /nvmux/lib.
export PATH=/bin:/nvmux/bin
export LD_LIBRARY_PATH=/nvmux/lib
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /var/run
echo "GUEST-RESULT booted=1 uptime=$(cut -d' ' -f1 /proc/uptime)"
result() { echo "GUEST-RESULT $*"; }
run() { echo "GUEST-RUN $*"; "$@"; }
finish() {
  result done=1 uptime=$(cut -d' ' -f1 /proc/uptime)
  sync
  poweroff -f
  sleep 30  # poweroff -f does not return
}
for m in $(cat /lib/modules/load-order); do
  insmod /lib/modules/$m.ko 2>/tmp/insmod.err || { result insmod_$m=fail; cat /tmp/insmod.err; }
done
