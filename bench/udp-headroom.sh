#!/usr/bin/env bash
# bench/udp-headroom.sh -- does the size of our small datagrams in the receiving VM's
# socket explain the ebpf provider's UDP loss at `iperf3 -b 0`? (issue 11)
#
#   sudo bench/udp-headroom.sh          (about 3 min; needs a release build)
#
# Brings up the kernel peer (`ebpf-vs-kernel.sh up K`) and a 2-host sandbox (prefix mnp,
# as bench/paired.sh), then:
#  1. truesize: a receiver that does not read, 200 datagrams of 18 bytes from VM 0 to
#     VM 1, then the bytes charged to its socket (`ss -uam`) per datagram;
#  2. ROUNDS pairs of 5 s `-b 0` UDP runs, the kernel's path and ours alternated:
#     delivered kpps, loss, RcvbufErrors of the receiving VM;
#  3. the same after giving VM 0's veth the headroom the kernel's bridge gives its ports:
#     the host end is enslaved to a bridge whose other port is a vxlan device (the
#     bridge sets both veth ends' needed_headroom; our TC programs still see and
#     redirect every packet first), then 1 and 2 again; then the bridge is removed.
# Env: ROUNDS=3 PEERS_DIR=<repo>/../shared/peers RUN_DIR=/tmp/midonet-headroom
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
RUN_DIR=${RUN_DIR:-/tmp/midonet-headroom}
BIN=$ROOT/target/release
SB=$RUN_DIR/sandbox
PEER=$PEERS_DIR/ebpf/ebpf-vs-kernel.sh
[ "$(id -u)" = 0 ] || { echo "needs root (namespaces)" >&2; exit 1; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
vmf() { jq -r ".vms[$1].$2" "$SB/sandbox.json"; }
teardown() {
    local f
    for f in "$RUN_DIR"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
    nsx mnp-h0 ip link del hrbr0 2>/dev/null; nsx mnp-h0 ip link del hrvx0 2>/dev/null
    "$BIN/midonet" sandbox down --state-dir "$SB" --prefix mnp >/dev/null 2>&1
    RUN_DIR=$RUN_DIR/peer "$PEER" cleanup >/dev/null 2>&1
}
trap 'teardown; exit 130' INT TERM
rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"
RUN_DIR=$RUN_DIR/peer "$PEER" up K >"$RUN_DIR/peer-up.txt" 2>&1 || { echo "peer setup failed" >&2; teardown; exit 1; }
"$BIN/midonet" sandbox up --hosts 2 --vms-per-host 2 --prefix mnp --state-dir "$SB" --api 127.0.0.1:18281 \
    --grpc-port 18282 --underlay 198.18.67.0/24 --datapath ebpf --underlay-link pair >"$RUN_DIR/sandbox-up.txt" 2>&1 ||
    { echo "sandbox up failed" >&2; teardown; exit 1; }
for i in 0 1; do j=$((1 - i))
    nsx "$(vmf $i ns)" ip neigh replace "$(vmf $j ip)" lladdr "$(vmf $j mac)" dev "$(vmf $i vm_if)" nud permanent
done
SRC=$(vmf 0 ns) DST=$(vmf 1 ns) DIP=$(vmf 1 ip) HOST_IF=$(vmf 0 host_if)
nsx "$SRC" ping -c3 -i 0.2 "$DIP" >/dev/null && nsx ebvm1 ping -c3 -i 0.2 198.19.10.2 >/dev/null ||
    { echo "no connectivity" >&2; teardown; exit 1; }
nsx "$DST" iperf3 -s -B "$DIP" -D --pidfile "$RUN_DIR/ours.pid"
nsx ebvm2 iperf3 -s -B 198.19.10.2 -D --pidfile "$RUN_DIR/kernel.pid"
sleep 0.5

rcvbuf_errs() { nsx "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp; }
truesize() {  # SRC DST DIP -> bytes charged per datagram
    nsx "$2" python3 - "$3" <<'PY' &
import re, socket, subprocess, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 9799))
time.sleep(2)
out = subprocess.run(["ss", "-uamn", "sport", "= :9799"], capture_output=True, text=True).stdout
print(int(re.search(r"skmem:\(r(\d+)", out).group(1)) / 200)
PY
    sleep 0.5
    nsx "$1" python3 -c "
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(200): s.sendto(b'x' * 18, ('$3', 9799))"
    wait
}
udp() {  # LABEL SRC DST DIP
    local r0 r1
    r0=$(rcvbuf_errs "$3")
    nsx "$2" iperf3 -c "$4" -u -b 0 -l 18 -t 5 -J >"$RUN_DIR/udp.json" 2>&1
    r1=$(rcvbuf_errs "$3")
    echo "$1: $(jq -r '.end.sum_received | "\((.packets - .lost_packets) / .seconds / 1000 | round) kpps delivered, loss \(.lost_percent * 100 | round / 100) %"' "$RUN_DIR/udp.json"), at the VM's socket $((r1 - r0))"
}
measure() {  # LABEL
    echo "[$1] bytes charged per datagram, 200 queued: ours $(truesize "$SRC" "$DST" "$DIP"), kernel's $(truesize ebvm1 ebvm2 198.19.10.2)"
    for _ in $(seq "$ROUNDS"); do udp "kernel" ebvm1 ebvm2 198.19.10.2; udp "ours, $1" "$SRC" "$DST" "$DIP"; done
}
measure "as built"
ul=$(nsx mnp-h0 ip -4 -o addr show dev mnp-u0 | awk '{print $4}' | cut -d/ -f1)
nsx mnp-h0 ip link add hrbr0 type bridge &&
    nsx mnp-h0 ip link add hrvx0 type vxlan id 4999 dstport 4999 local "$ul" nolearning &&
    nsx mnp-h0 ip link set hrvx0 master hrbr0 && nsx mnp-h0 ip link set "$HOST_IF" master hrbr0 ||
    { echo "bridge trick failed" >&2; teardown; exit 1; }
nsx "$SRC" ping -c3 -i 0.2 "$DIP" >/dev/null || echo "(no ping through the bridged port)"
measure "with headroom"
teardown
