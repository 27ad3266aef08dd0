#!/bin/bash
# The ebpf provider's own tunnel ends on and off, in one running setup: the
# same sandbox, the same VMs, only `mdp_config.flags` changed between runs
# (0 = the programs encapsulate and decapsulate themselves; 6 = both off,
# every tunnel packet through the kernel's vxlan device, as before
# departure 18 of ARCHITECTURE.md). Alternates the two, ROUNDS times.
#
#   sudo bench/tunnel-ab.sh tcp   # in a `midonet sandbox up --prefix mnq --hosts 2
#                                 #   --vms-per-host 1 --datapath ebpf --underlay-link pair`:
#                                 #   iperf3 TCP VM 0 -> VM 1 (Gbit/s), then a 10 ms ping (avg RTT ms)
#   sudo bench/tunnel-ab.sh cps   # in what `KEEP=1 DATAPATHS=ebpf CLIENTS=wide WINDOWS=1
#                                 #   FP_N=0 bench/cps.sh midonet` left running: wrk with
#                                 #   `Connection: close` from its VM to the outside nginx
#
# Env: ROUNDS (5), DUR seconds per run (5 tcp, 8 cps), PREFIX (mnq, tcp mode).
# Every pinned ebpf instance on the machine is switched (the setup's two
# hosts: run nothing else with the ebpf provider meanwhile); flags go back
# to 0 at the end. Needs bpftool and jq.
set -euo pipefail
MODE=${1:?usage: $0 tcp|cps}
ROUNDS=${ROUNDS:-5}
PREFIX=${PREFIX:-mnq}
for t in bpftool jq iperf3 wrk; do
    command -v $t >/dev/null || { echo "needs $t (apt-get install bpftool jq iperf3 wrk)" >&2; exit 1; }
done

setflags() {
    local d v
    for d in /run/midonet/bpf/ns-*/*/; do
        [ -e "${d}mdp_config" ] || continue
        # struct mdp_config: flags is the fourth u32 (little endian here).
        mapfile -t v < <(bpftool -j map dump pinned "${d}mdp_config" | jq -r '.[0].value[]')
        v[12]=$(printf '0x%02x' "$1")
        bpftool map update pinned "${d}mdp_config" key hex 00 00 00 00 value "${v[@]}"
    done
}
trap 'setflags 0' EXIT

case $MODE in
tcp)
    DUR=${DUR:-5}
    dst=$(ip netns exec "$PREFIX-vm1" ip -4 -o addr show | awk '!/ lo /{split($4, a, "/"); print a[1]; exit}')
    for r in $(seq "$ROUNDS"); do
        for f in 0 6; do
            setflags "$f"
            ip netns exec "$PREFIX-vm1" iperf3 -s -1 -D -p 5399 >/dev/null 2>&1 || true
            sleep 0.5
            t=$(ip netns exec "$PREFIX-vm0" iperf3 -c "$dst" -p 5399 -t "$DUR" -J |
                jq '.end.sum_received.bits_per_second / 1e9')
            rtt=$(ip netns exec "$PREFIX-vm0" ping -q -c 300 -i 0.01 "$dst" | awk -F/ '/rtt/ {print $5}')
            echo "round $r flags $f tcp_gbps $t rtt_ms $rtt"
        done
    done
    ;;
cps)
    DUR=${DUR:-8}
    for r in $(seq "$ROUNDS"); do
        for f in 0 6; do
            setflags "$f"
            c=$(ip netns exec mnc-vm1 wrk -t2 -c64 -d"${DUR}s" -H 'Connection: close' \
                http://203.0.113.1:8080/ 2>/dev/null | awk '/Requests\/sec/ {printf "%d", $2}')
            echo "round $r flags $f cps $c"
            sleep 2
        done
    done
    ;;
*) echo "usage: $0 tcp|cps" >&2; exit 2 ;;
esac
