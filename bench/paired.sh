#!/usr/bin/env bash
# bench/paired.sh -- midonet-rs's datapath against the kernel's bridge + VXLAN path,
# measured in back-to-back pairs (issue 11's protocol, as ../shared/peers/ebpf does):
# this machine's figures drift by ±15 % between minutes, so a ratio is taken within
# each pair of runs made one right after the other, and the median of those ratios is
# the figure. Both setups stay up for the whole run; the one not being measured idles.
#
#   sudo bench/paired.sh            PAIRS=7 rounds (about 30 min on 2 cores; 3 pairs a round)
#   sudo PAIRS=5 DUR=5 bench/paired.sh
#
# Kernel peer: `$PEERS_DIR/ebpf/ebpf-vs-kernel.sh up K` (kernel-baseline.sh's `vxlan`
# variant under eb* names: bridge + VXLAN per host namespace, VM MTU 1450, static
# neighbours), run as it is. midonet-rs: `midonet sandbox up --hosts 2 --vms-per-host 2
# --datapath $DATAPATH` (prefix mnp, its own underlay), VM 0 -> VM 1 (one bridge, across
# the tunnel: "l2"), VM 0 -> VM 3 (bridge -> router -> bridge, other host: "l3") and,
# with FIP=1 (the default), VM 1 -> VM 2's floating IP $FIP_ADDR ("fip": bridge ->
# router -> bridge, other host, with the router's static DNAT on the way in and static
# SNAT on the way out, MidoNet's floating-IP rules, so every packet is rewritten in the
# kernel; VM 2, not VM 3, because a stateless SNAT of VM 3's replies would break "l3"),
# with static neighbours as the peer has. Each midonet-rs setup is measured next to a kernel
# run of its own, back to back, in a pair (so every ratio compares two adjacent runs; one
# kernel run shared by all setups left the last setup three runs away from it): per round,
# one pair per setup, the setups' order reversed every round and the kernel first in every
# other pair. Each run measures:
#   TCP   iperf3 one stream, DUR s, receiver Gbit/s, and Gbit/s per busy core
#   UDP   iperf3 UDP_LEN-byte payload (64-byte frames), -b 0: delivered kpps, loss %,
#         the share of the sent packets dropped by the receiving VM's own socket (its
#         buffer full: /proc/net/snmp Udp RcvbufErrors in the VM), and busy CPU µs per
#         delivered packet (/proc/stat over the test, whole box)
#   UDP paced  the same at a fixed offered rate, UDP_PACED_KPPS (default 60; 0 = off),
#         for UDP_PACED_DUR s: the loss of each path when both are offered the same
#         load, which -b 0 does not give (a faster path offers the receiver more)
#   RTT   ping PING_N x PING_I s (average), and flood ping FLOOD_N (average, µs)
# Output: per-pair lines, then per figure the median of each setup and the median of
# the per-pair ratios midonet-rs / kernel. Raw files in $RUN_DIR.
# BPF_STATS=1 also turns on the kernel's BPF run-time accounting
# (kernel.bpf_stats_enabled, restored after) and reports, for the midonet-rs setups,
# the mean time of one run of the datapath's programs (mdp_*, both hosts) during the
# UDP test and during the 10 ms ping (cold caches), from `bpftool prog show`.
#
# Env: BPF_STATS=0 PAIRS=7 DUR=10 UDP_LEN=18 UDP_PACED_KPPS=60 UDP_PACED_DUR=5 PING_N=100 PING_I=0.01 FLOOD_N=20000 DATAPATH=ebpf UNDERLAY_LINK=pair FIP=1
#      PROFILE=release BUILD=1 PEERS_DIR=<repo>/../shared/peers RUN_DIR=/tmp/midonet-paired
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIRS=${PAIRS:-7}
DUR=${DUR:-10}
UDP_LEN=${UDP_LEN:-18}
UDP_PACED_KPPS=${UDP_PACED_KPPS:-60}
UDP_PACED_DUR=${UDP_PACED_DUR:-5}
PING_N=${PING_N:-100}
PING_I=${PING_I:-0.01}
FLOOD_N=${FLOOD_N:-20000}
BPF_STATS=${BPF_STATS:-0}
DATAPATH=${DATAPATH:-ebpf}
FIP=${FIP:-1}
# VM 2's floating IP (TEST-NET-2: routed nowhere else).
FIP_ADDR=198.51.100.11
PROFILE=${PROFILE:-release}
BUILD=${BUILD:-1}
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
RUN_DIR=${RUN_DIR:-/tmp/midonet-paired}
BIN=$ROOT/target/$PROFILE
SB_DIR=$RUN_DIR/sandbox
# The hosts' underlay: `pair` (one veth between the two host namespaces) is how the
# peers wire theirs; `bridge` (the sandbox's default, an underlay namespace with a
# bridge) costs every tunnelled packet a bridge and a veth more (figures before
# 2026-12-04 were taken that way).
UNDERLAY_LINK=${UNDERLAY_LINK:-pair}
SB_ARGS=(--hosts 2 --vms-per-host 2 --prefix mnp --state-dir "$SB_DIR" --api 127.0.0.1:18281
         --grpc-port 18282 --underlay 198.18.67.0/24 --datapath "$DATAPATH" --underlay-link "$UNDERLAY_LINK")
PEER=$PEERS_DIR/ebpf/ebpf-vs-kernel.sh
# The peer's names (see its README): VM namespaces ebvm1/ebvm2, VM 2 at 198.19.10.2.
K_SRC=ebvm1 K_DST=ebvm2 K_DIP=198.19.10.2

log() { echo "[$(date +%T)] $*" >&2; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
median() {
    tr ' ' '\n' | grep -E '^-?[0-9.]+$' | sort -g |
        awk '{a[NR]=$1} END { if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.4g\n", (a[NR/2]+a[NR/2+1])/2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0==0 || b+0==0) print "n/a"; else printf "%.3f\n", a/b }'; }

[ "$(id -u)" = 0 ] || { echo "bench/paired.sh needs root (namespaces)" >&2; exit 1; }
for t in iperf3 jq ping ip; do command -v $t >/dev/null || { echo "bench/paired.sh: $t is missing" >&2; exit 1; }; done
[ -x "$PEER" ] || { echo "bench/paired.sh: the kernel peer $PEER is missing" >&2; exit 1; }

rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"
BPF_STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0)
teardown() {
    local f
    [ "$BPF_STATS" = 1 ] && sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_WAS"
    for f in "$RUN_DIR"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
    [ -x "$BIN/midonet" ] && "$BIN/midonet" sandbox down --state-dir "$SB_DIR" --prefix mnp >/dev/null 2>&1
    RUN_DIR=$RUN_DIR/peer "$PEER" cleanup >/dev/null 2>&1
}
trap 'log interrupted; teardown; exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
    log "building ($PROFILE)"
    flag=; [ "$PROFILE" = release ] && flag=--release
    (cd "$ROOT" && cargo build $flag --locked -p midonet-bin -p midonet-cluster-bin -p midonet-agent-bin) >&2 ||
        { log "build failed"; exit 1; }
fi

log "kernel peer: $PEER up K"
RUN_DIR=$RUN_DIR/peer "$PEER" up K >"$RUN_DIR/peer-up.txt" 2>&1 || { log "peer setup failed"; cat "$RUN_DIR/peer-up.txt" >&2; teardown; exit 1; }
log "midonet-rs: sandbox up ($DATAPATH)"
if ! "$BIN/midonet" sandbox up "${SB_ARGS[@]}" >"$RUN_DIR/sandbox-up.txt" 2>&1; then
    log "sandbox up failed"; tail -20 "$RUN_DIR/sandbox-up.txt" >&2; teardown; exit 1
fi
if grep -qs "falling back" "$SB_DIR"/*agent*.log; then
    log "an agent fell back to another datapath; not measured as $DATAPATH"; teardown; exit 1
fi
vmf() { jq -r ".vms[$1].$2" "$SB_DIR/sandbox.json"; }
for i in 0 1; do j=$((1 - i))
    nsx "$(vmf $i ns)" ip neigh replace "$(vmf $j ip)" lladdr "$(vmf $j mac)" dev "$(vmf $i vm_if)" nud permanent
done
for v in 0 1 2 3; do   # each VM: its gateway, the router port on its bridge
    g=$(jq -r ".bridges[$(vmf $v bridge)].router_port_mac" "$SB_DIR/sandbox.json")
    [ -n "$g" ] && [ "$g" != null ] && nsx "$(vmf $v ns)" ip neigh replace "$(vmf $v gateway)" lladdr "$g" dev "$(vmf $v vm_if)" nud permanent
done

# The floating IP: static DNAT to VM 2's address in the router's inbound filter, static
# SNAT from it in the outbound filter (port ranges 0-0: the IP only, no state).
SETUPS="kernel l2 l3"
if [ "$FIP" = 1 ]; then
    mn() { "$BIN/midonet" --url http://127.0.0.1:18281/midonet-api "$@"; }
    fixed=$(vmf 2 ip)
    if pre=$(mn -o id chain create --name fip-pre) && post=$(mn -o id chain create --name fip-post) &&
        mn -o id rule create --chain "$pre" --type dnat --nw-dst "$FIP_ADDR/32" --nat-target "$fixed" --flow-action accept >/dev/null &&
        mn -o id rule create --chain "$post" --type snat --nw-src "$fixed/32" --nat-target "$FIP_ADDR" --flow-action accept >/dev/null &&
        mn router update "$(jq -r .router_id "$SB_DIR/sandbox.json")" --inbound-filter "$pre" --outbound-filter "$post" >/dev/null; then
        SETUPS="kernel l2 l3 fip"
    else
        log "floating IP rules could not be created"; teardown; exit 1
    fi
fi

# setups: name -> "src_ns dst_ns dst_ip"
declare -A SETUP=(
    [kernel]="$K_SRC $K_DST $K_DIP"
    [l2]="$(vmf 0 ns) $(vmf 1 ns) $(vmf 1 ip)"
    [l3]="$(vmf 0 ns) $(vmf 3 ns) $(vmf 3 ip)"
    [fip]="$(vmf 1 ns) $(vmf 2 ns) $FIP_ADDR"
)
for s in $SETUPS; do
    read -r src dst dip <<<"${SETUP[$s]}"
    ok=0; for _ in $(seq 50); do nsx "$src" ping -c1 -W1 "$dip" >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
    [ $ok = 1 ] || { log "$s: no connectivity $src -> $dip"; teardown; exit 1; }
    # The server of fip listens on VM 2's own address.
    [ "$s" = fip ] && dip=$fixed
    nsx "$dst" iperf3 -s -B "$dip" -D --pidfile "$RUN_DIR/iperf3-$s.pid" >/dev/null 2>&1 || { log "$s: iperf3 -s failed"; teardown; exit 1; }
done
sleep 0.5

# BPF accounting: "runs ns" summed over the datapath's programs (mdp_*), or "0 0".
bpf_snap() {
    [ "$BPF_STATS" = 1 ] || { echo "0 0"; return; }
    bpftool prog show -j 2>/dev/null |
        jq -r '[.[] | select(.name // "" | startswith("mdp_"))] | "\(map(.run_cnt // 0) | add // 0) \(map(.run_time_ns // 0) | add // 0)"'
}
ns_per_run() { echo "$1 $2" | awk '{ n=$3-$1; if (n>0) printf "%.0f\n", ($4-$2)/n; else print "n/a" }'; }

cpu_snap() { echo "$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat) $(date +%s%N)"; }
# RcvbufErrors of a namespace's UDP sockets (datagrams its sockets had no room for).
rcvbuf_errs() {
    local n
    n=$(nsx "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp 2>/dev/null)
    echo "${n:-0}"
}
# iperf3 UDP JSON -> "delivered_kpps loss_% sent_packets"
udp_figures() {
    jq -r '.end.sum_received | "\((.packets - .lost_packets) / .seconds / 1000 | . * 10 | round / 10) \(.lost_percent | . * 100 | round / 100) \(.packets)"' "$1" 2>/dev/null || echo "n/a n/a 0"
}
sock_share() { awk -v d="$1" -v n="$2" 'BEGIN { if (n+0>0) printf "%.2f\n", d*100/n; else print "n/a" }'; }
busy_cores() { echo "$1 $2" | awk '{ printf "%.3f\n", ($3-$1)/100/(($4-$2)/1e9) }'; }

# measure SETUP PAIR: one run of every figure; appends "setup pair tcp tcp_per_core rx loss us_per_pkt rtt flood"
measure() {
    local s=$1 p=$2 src dst dip c0 c1 b0 bu bp tcp eff rx loss cost rtt flood out r0 r1 sent sock prx ploss psock
    read -r src dst dip <<<"${SETUP[$s]}"
    out=$RUN_DIR/$s-$p
    c0=$(cpu_snap)
    timeout $((DUR + 30)) ip netns exec "$src" iperf3 -c "$dip" -t "$DUR" -J >"$out-tcp.json" 2>&1
    c1=$(cpu_snap)
    tcp=$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' "$out-tcp.json" 2>/dev/null || echo n/a)
    eff=$(awk -v t="$tcp" -v c="$(busy_cores "$c0" "$c1")" 'BEGIN { if (t+0>0 && c>0) printf "%.2f", t/c; else print "n/a" }')
    sleep 1
    c0=$(cpu_snap); b0=$(bpf_snap); r0=$(rcvbuf_errs "$dst")
    timeout $((DUR + 30)) ip netns exec "$src" iperf3 -c "$dip" -u -b 0 -l "$UDP_LEN" -t "$DUR" -J >"$out-udp.json" 2>&1
    c1=$(cpu_snap); bu=$(ns_per_run "$b0" "$(bpf_snap)"); r1=$(rcvbuf_errs "$dst")
    read -r rx loss sent <<<"$(udp_figures "$out-udp.json")"
    sock=$(sock_share $((r1 - r0)) "$sent")
    cost=$(awk -v k="$rx" -v c="$(busy_cores "$c0" "$c1")" 'BEGIN { if (k+0>0 && c>0) printf "%.2f", c*1000/k; else print "n/a" }')
    prx=n/a ploss=n/a psock=n/a
    if [ "$UDP_PACED_KPPS" -gt 0 ]; then
        sleep 1
        r0=$(rcvbuf_errs "$dst")
        timeout $((UDP_PACED_DUR + 30)) ip netns exec "$src" iperf3 -c "$dip" -u -b $((UDP_PACED_KPPS * 1000 * UDP_LEN * 8)) \
            -l "$UDP_LEN" -t "$UDP_PACED_DUR" -J >"$out-udp-paced.json" 2>&1
        r1=$(rcvbuf_errs "$dst")
        read -r prx ploss sent <<<"$(udp_figures "$out-udp-paced.json")"
        psock=$(sock_share $((r1 - r0)) "$sent")
    fi
    sleep 1
    b0=$(bpf_snap)
    rtt=$(timeout 60 ip netns exec "$src" ping -n -q -c "$PING_N" -i "$PING_I" "$dip" 2>/dev/null |
        awk -F'/' '/^rtt|^round-trip/ {print $5}')
    bp=$(ns_per_run "$b0" "$(bpf_snap)")
    [ "$s" = kernel ] && { bu=n/a; bp=n/a; }
    flood=$(timeout 60 ip netns exec "$src" ping -n -f -q -c "$FLOOD_N" "$dip" 2>/dev/null |
        awk -F'/' '/^rtt|^round-trip/ {printf "%.1f\n", $5 * 1000}')
    log "pair $p $s: tcp ${tcp} Gbit/s (${eff}/core), udp ${rx} kpps loss ${loss}% (at the VM's socket ${sock}%; ${cost} us/pkt), paced ${UDP_PACED_KPPS}k: ${prx} kpps loss ${ploss}% (socket ${psock}%), rtt ${rtt:-n/a} ms, flood ${flood:-n/a} us, bpf ns/run udp ${bu} ping ${bp} (load $(loadavg))"
    echo "$s $p $tcp $eff $rx $loss $cost ${rtt:-n/a} ${flood:-n/a} $bu $bp $sock $prx $ploss $psock" >>"$RUN_DIR/runs.txt"
}

[ "$BPF_STATS" = 1 ] && sysctl -qw kernel.bpf_stats_enabled=1
log "start: $PAIRS rounds of pairs, kernel $(uname -r), load $(loadavg)"
OURS=${SETUPS#kernel }
n=0
for p in $(seq "$PAIRS"); do
    if [ $((p % 2)) = 1 ]; then order=$OURS; else order=$(echo "$OURS" | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for s in $order; do
        # One pair: the kernel and setup s, back to back; "p.s" names it.
        n=$((n + 1))
        if [ $((n % 2)) = 1 ]; then measure kernel "$p.$s"; measure "$s" "$p.$s"
        else measure "$s" "$p.$s"; measure kernel "$p.$s"; fi
    done
done

# ------------------------------------------------------------------ report
col() { awk -v s="$1" -v c="$2" '$1==s { print $c }' "$RUN_DIR/runs.txt" | tr '\n' ' '; }
pair_ratios() {  # setup column -> per-pair ratios setup/kernel
    awk -v s="$1" -v c="$2" '$1=="kernel" { k[$2]=$c } $1==s { m[$2]=$c }
        END { for (p in m) if (k[p]+0>0 && m[p]+0>0) printf "%.3f ", m[p]/k[p] }' "$RUN_DIR/runs.txt"
}
{
    echo "paired run: $PAIRS rounds of one kernel/midonet-rs pair per setup, DUR=$DUR s, kernel $(uname -r), $(date -u +'%Y-%m-%d %H:%M UTC'), commit $(cd "$ROOT" && git rev-parse --short HEAD)"
    echo "command: sudo BPF_STATS=$BPF_STATS PAIRS=$PAIRS DUR=$DUR UDP_PACED_KPPS=$UDP_PACED_KPPS DATAPATH=$DATAPATH FIP=$FIP bench/paired.sh"
    echo
    echo "| figure | kernel bridge+VXLAN median | midonet-rs $DATAPATH, one bridge | / kernel (median of pair ratios) | midonet-rs $DATAPATH, bridge → router → bridge | / kernel | midonet-rs $DATAPATH, to a floating IP | / kernel |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for f in "TCP Gbit/s:3" "TCP Gbit/s per busy core:4" "UDP 64 B delivered kpps:5" "UDP loss %:6" "UDP loss at the receiving VM's socket, % of sent:12" "UDP paced at $UDP_PACED_KPPS kpps, delivered kpps:13" "UDP paced, loss %:14" "UDP paced, loss at the VM's socket %:15" "busy CPU µs per UDP packet:7" "ping RTT ms:8" "flood ping RTT µs:9" "BPF ns per program run, UDP:10" "BPF ns per program run, 10 ms ping:11"; do
        name=${f%:*}; c=${f##*:}
        echo "| $name | $(col kernel "$c" | median) | $(col l2 "$c" | median) | $(pair_ratios l2 "$c" | median) | $(col l3 "$c" | median) | $(pair_ratios l3 "$c" | median) | $(col fip "$c" | median) | $(pair_ratios fip "$c" | median) |"
    done
    echo
    echo "per-pair runs (setup pair tcp tcp/core udp_kpps loss% us/pkt rtt_ms flood_us bpf_ns_udp bpf_ns_ping sock_loss% paced_kpps paced_loss% paced_sock_loss%):"
    cat "$RUN_DIR/runs.txt"
} | tee "$RUN_DIR/report.md"
mkdir -p "$ROOT/bench/results"
cp "$RUN_DIR/report.md" "$ROOT/bench/results/paired-$DATAPATH-$(date -u +%Y%m%d-%H%M).txt"
teardown
