# shellcheck shell=bash
# Sourced by the benchmark scripts that compare nvmux with a peer
# (spdk-peer.sh, tcp.sh): the machine's state around a measurement.
# nvmux-bench-c2c times a cache line handed between CPU 0 and CPU 1; our
# 2-vCPU test machine gives about 40 ns when its vCPUs share a cache
# ("near") and about 170 ns when not ("far"), switching within seconds.
# Needs $c2c, the nvmux-bench-c2c binary.

# The handoff time now, in whole ns (a 10 ms probe).
# shellcheck disable=SC2154  # $c2c: set by the script that sources this
c2c_ns() { "$c2c" -a 0 -b 1 --ms 10 | awk '{ printf "%.0f", $3 }'; }

# near, far or mixed, from the probes before and after a measurement.
machine_state() {  # PRE_NS POST_NS
  awk -v a="$1" -v b="$2" 'BEGIN { print (a < 100 && b < 100) ? "near" : (a >= 100 && b >= 100) ? "far" : "mixed" }'
}
