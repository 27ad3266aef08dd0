#!/usr/bin/env bash
# bench/exact_ab.sh -- the ebpf datapath's exact-match cache on and off, on one sandbox
# (issue 11): the same agents and flows, only `mdp_config.flags` (MDP_CFG_NO_EXACT)
# flipped on both hosts between measurements, in an order that alternates by round.
#
#   sudo bench/exact_ab.sh              ROUNDS=8 rounds (about 4 min)
#
# midonet-rs: `midonet sandbox up --hosts 2 --vms-per-host 2 --datapath ebpf
# --underlay-link pair` (prefix mnx), static neighbours; VM 0 -> VM 1 (one bridge,
# across the tunnel: l2) and VM 0 -> VM 3 (bridge -> router -> bridge: l3).
# Per round and mode: ping N x 10 ms to each (average RTT), iperf3 UDP 18-byte payload
# -b 0 for UDP_SECS s to VM 1 (delivered kpps), and with kernel.bpf_stats_enabled the
# mean run time of the datapath's programs (mdp_*, both hosts) during each.
#
# Env: ROUNDS=8 N=200 UDP_SECS=5 PROFILE=release RUN_DIR=/tmp/midonet-exact-ab
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-8}
N=${N:-200}
UDP_SECS=${UDP_SECS:-5}
BIN=$ROOT/target/${PROFILE:-release}
RUN_DIR=${RUN_DIR:-/tmp/midonet-exact-ab}
SB=$RUN_DIR/sandbox
[ "$(id -u)" = 0 ] || { echo "bench/exact_ab.sh needs root" >&2; exit 1; }
for t in iperf3 jq ping bpftool; do command -v $t >/dev/null || { echo "bench/exact_ab.sh: $t is missing" >&2; exit 1; }; done

STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0)
teardown() {
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
    [ -f "$RUN_DIR/iperf3.pid" ] && kill "$(cat "$RUN_DIR/iperf3.pid")" 2>/dev/null
    "$BIN/midonet" sandbox down --state-dir "$SB" --prefix mnx >/dev/null 2>&1
}
trap 'teardown; exit 130' INT TERM
rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"
. "$ROOT/bench/sandbox4.sh"
sandbox4_up mnx 18480 198.18.78.0/24 ebpf
# The agents' pinned config maps: the two newest instances holding mdp_exact.
CFGS=$(ls -dt /run/midonet/bpf/ns-*/*/mdp_exact | head -2 | xargs -n1 dirname | sed 's|$|/mdp_config|')
[ "$(echo "$CFGS" | wc -w)" = 2 ] || { echo "bench/exact_ab.sh: no pinned mdp_config" >&2; teardown; exit 1; }
setmode() {
    local c v f
    if [ "$1" = on ]; then f="00 00 00 00"; else f="01 00 00 00"; fi
    for c in $CFGS; do
        v=$(bpftool map lookup pinned "$c" key 0 0 0 0 -j | jq -r '.value[0:12] | map(ltrimstr("0x")) | join(" ")')
        bpftool map update pinned "$c" key 0 0 0 0 value hex $v $f
    done
}
src=$(vmf 0 ns); l2=$(vmf 1 ip); l3=$(vmf 3 ip)
nsx "$src" ping -c 3 -W 1 "$l2" >/dev/null; nsx "$src" ping -c 3 -W 1 "$l3" >/dev/null
nsx "$(vmf 1 ns)" iperf3 -s -B "$l2" -D --pidfile "$RUN_DIR/iperf3.pid"
sleep 0.5
sysctl -qw kernel.bpf_stats_enabled=1
bsnap() { bpftool prog show -j | jq -r '[.[] | select(.name // "" | startswith("mdp_"))] | "\(map(.run_cnt // 0) | add) \(map(.run_time_ns // 0) | add)"'; }
nsrun() { echo "$1 $2" | awk '{n=$3-$1; if (n>0) printf "%.0f", ($4-$2)/n; else print "n/a"}'; }
rtt() { nsx "$src" ping -n -q -c "$N" -i 0.01 "$1" | awk -F/ '/^rtt/{print $5}'; }
{
    echo "exact-match cache A/B: $ROUNDS rounds, $(date -u +'%Y-%m-%d %H:%M UTC'), commit $(cd "$ROOT" && git rev-parse --short HEAD), kernel $(uname -r)"
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then order="on off"; else order="off on"; fi
        for m in $order; do
            setmode "$m"; sleep 0.5
            b0=$(bsnap); a2=$(rtt "$l2"); b1=$(bsnap); a3=$(rtt "$l3"); b2=$(bsnap)
            u=$(nsx "$src" iperf3 -c "$l2" -u -b 0 -l 18 -t "$UDP_SECS" -J |
                jq -r '.end.sum_received | (.packets - .lost_packets) / .seconds / 1000 | . * 10 | round / 10')
            b3=$(bsnap)
            echo "round $r exact=$m rtt_l2 $a2 rtt_l3 $a3 ns/run_ping_l2 $(nsrun "$b0" "$b1") ns/run_ping_l3 $(nsrun "$b1" "$b2") udp_kpps $u ns/run_udp $(nsrun "$b2" "$b3")"
        done
    done
} | tee "$RUN_DIR/runs.txt"
median() { sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
echo "medians (on / off):"
for f in rtt_l2 rtt_l3 ns/run_ping_l2 ns/run_ping_l3 udp_kpps ns/run_udp; do
    on=$(awk -v f="$f" '/exact=on/ { for (i=1;i<NF;i++) if ($i==f) print $(i+1) }' "$RUN_DIR/runs.txt" | median)
    off=$(awk -v f="$f" '/exact=off/ { for (i=1;i<NF;i++) if ($i==f) print $(i+1) }' "$RUN_DIR/runs.txt" | median)
    echo "  $f: $on / $off"
done | tee -a "$RUN_DIR/runs.txt"
mkdir -p "$ROOT/bench/results"
cp "$RUN_DIR/runs.txt" "$ROOT/bench/results/exact-ab-$(date -u +%Y%m%d-%H%M).txt"
teardown
