#!/usr/bin/env bash
# bench/run.sh -- end-to-end benchmark: midonet-rs VM <-> VM across two hosts,
# next to the kernel's bridge+VXLAN path and OVN, measured in the same run on
# the same machine, then written into docs/PERFORMANCE.md.
#
#   sudo bench/run.sh                 everything (about 10 min on 2 cores)
#   sudo bench/run.sh midonet         only midonet-rs (no peers, no doc update)
#   sudo bench/run.sh kernel ovn      only the peers
#   sudo bench/run.sh report          re-render the table from the last run's results
#
# midonet-rs: `midonet sandbox up --hosts 2` (own prefix, ports and underlay, so
# it does not touch a sandbox you have running), then from the sandbox's
# sandbox.json: VM 0 and VM 1 (bridge 1, on host 0 and host 1: L2 across a
# VXLAN tunnel) and VM 0 -> VM 3 (bridge 1 -> router -> bridge 2, other host).
# Per variant, REPS times: iperf3 TCP one stream DUR s (receiver rate), iperf3
# UDP UDP_LEN-byte payload at -b 0 (datagrams delivered per second, loss), ping
# PING_N x PING_I s (average RTT). VMs get static neighbour entries so that no
# figure includes ARP (as the peers do). Control plane: bench/cpbench.py (port
# bind -> traffic flows; drop rule add -> traffic stops; rule delete -> flows).
#
# Peers: $PEERS_DIR/kernel-baseline.sh vxlan and $PEERS_DIR/ovn.sh ls lr cp, run
# as they are (read-only, not copied), with the same REPS/DUR/UDP_LEN/PING_*.
#
# midonet-rs runs once per datapath provider in DATAPATHS (default "ebpf userspace"):
# a fresh sandbox each, `--datapath <provider>`; a provider that falls back to another
# (the agent says so in its log) is reported as such, not measured under its name.
#
# Env: DATAPATHS="ebpf userspace" REPS=3 DUR=10 UDP_LEN=18 PING_N=100 PING_I=0.01 CP_REPS=REPS PROBE_I=0.001 UNDERLAY_LINK=pair
#      PEERS_DIR=<repo>/../shared/peers  PROFILE=release (or debug)  BUILD=1
#      RUN_DIR=/tmp/midonet-bench  DOC=<repo>/docs/PERFORMANCE.md  UPDATE_DOC=1
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATAPATHS=${DATAPATHS:-ebpf userspace}
REPS=${REPS:-3}
DUR=${DUR:-10}
UDP_LEN=${UDP_LEN:-18}
PING_N=${PING_N:-100}
PING_I=${PING_I:-0.01}
CP_REPS=${CP_REPS:-$REPS}
PROBE_I=${PROBE_I:-0.001}
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
PROFILE=${PROFILE:-release}
BUILD=${BUILD:-1}
RUN_DIR=${RUN_DIR:-/tmp/midonet-bench}
DOC=${DOC:-$ROOT/docs/PERFORMANCE.md}
UPDATE_DOC=${UPDATE_DOC:-1}
BIN=$ROOT/target/$PROFILE
SB_DIR=$RUN_DIR/sandbox
# The hosts' underlay: `pair` (one veth between the two host namespaces) is how the
# peers wire theirs; `bridge` (the sandbox's default, an underlay namespace with a
# bridge) costs every tunnelled packet a bridge and a veth more (figures before
# 2026-12-04 were taken that way).
UNDERLAY_LINK=${UNDERLAY_LINK:-pair}
SB_ARGS=(--hosts 2 --vms-per-host 2 --prefix mnb --state-dir "$SB_DIR" --api 127.0.0.1:18181
         --grpc-port 18182 --underlay 198.18.66.0/24 --underlay-link "$UNDERLAY_LINK")
CMDLINE="DATAPATHS='$DATAPATHS' REPS=$REPS DUR=$DUR CP_REPS=$CP_REPS PROFILE=$PROFILE BUILD=$BUILD bench/run.sh${*:+ $*}"

log() { echo "[$(date +%T)] $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
median() {  # numbers on stdin (n/a ignored) -> median
    tr ' ' '\n' | grep -E '^-?[0-9.]+$' | sort -g |
        awk '{a[NR]=$1} END { if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.4g\n", (a[NR/2]+a[NR/2+1])/2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0==0 && a!="0" || b+0==0) print "n/a"; else printf "%.2f\n", a/b }'; }

[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root (namespaces)" >&2; exit 1; }
for t in iperf3 jq ping python3 ip; do
    command -v $t >/dev/null || missing="${missing:-} $t"
done
if [ -n "${missing:-}" ]; then
    log "installing:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        $(echo "$missing" | sed 's/python3/python3-minimal/; s/\bip\b/iproute2/; s/ping/iputils-ping/') >/dev/null ||
        { echo "cannot install$missing" >&2; exit 1; }
fi

STEPS="${*:-midonet kernel ovn}"
mkdir -p "$RUN_DIR"
RES=$RUN_DIR/results
# `report` alone re-renders the table from the results of the last run.
[ "$STEPS" = report ] || { rm -rf "$RES"; mkdir -p "$RES"; }

# ---------------------------------------------------------------- midonet-rs
MN_DOWN=
mn_down() {
    [ -x "$BIN/midonet" ] && "$BIN/midonet" sandbox down --state-dir "$SB_DIR" --prefix mnb >/dev/null 2>&1
    pkill_ours
}
# iperf3 servers we started: by the PIDs in their pidfiles only
pkill_ours() {
    local f
    for f in "$RUN_DIR"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
}
trap 'log interrupted; mn_down; exit 130' INT TERM

vmf() { jq -r ".vms[$1].$2" "$SB_DIR/sandbox.json"; }

# measure_dp NAME SRC_IDX DST_IDX: iperf3 TCP, UDP, ping between two sandbox VMs
measure_dp() {
    local name=$1 a=$2 b=$3 r
    local src dst dip
    src=$(vmf "$a" ns); dst=$(vmf "$b" ns); dip=$(vmf "$b" ip)
    nsx "$dst" iperf3 -s -B "$dip" -D --pidfile "$RUN_DIR/iperf3.pid" >/dev/null 2>&1 ||
        { log "[$name] iperf3 -s failed"; echo "$name|n/a|n/a|n/a|n/a|n/a" >>"$RES/midonet.txt"; return; }
    sleep 0.5
    local tcps="" rxs="" losses="" rtts=""
    for r in $(seq "$REPS"); do
        timeout $((DUR + 30)) ip netns exec "$src" iperf3 -c "$dip" -t "$DUR" -J >"$RES/mn-$name-tcp-$r.json" 2>&1
        local tcp; tcp=$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' "$RES/mn-$name-tcp-$r.json" 2>/dev/null || echo n/a)
        sleep 1
        timeout $((DUR + 30)) ip netns exec "$src" iperf3 -c "$dip" -u -b 0 -l "$UDP_LEN" -t "$DUR" -J >"$RES/mn-$name-udp-$r.json" 2>&1
        local rx loss
        rx=$(jq -r '.end.sum_received | (.packets - .lost_packets) / .seconds / 1000 | . * 10 | round / 10' "$RES/mn-$name-udp-$r.json" 2>/dev/null || echo n/a)
        loss=$(jq -r '.end.sum_received.lost_percent | . * 10 | round / 10' "$RES/mn-$name-udp-$r.json" 2>/dev/null || echo n/a)
        sleep 2
        local rtt
        rtt=$(timeout 60 ip netns exec "$src" ping -n -q -c "$PING_N" -i "$PING_I" "$dip" 2>/dev/null |
            awk -F'/' '/^rtt|^round-trip/ {print $5}')
        rtt=${rtt:-n/a}
        log "[midonet $name] rep $r: tcp=${tcp} Gbit/s udp rx=${rx} kpps loss=${loss}% rtt=${rtt} ms (load $(loadavg))"
        tcps="$tcps $tcp"; rxs="$rxs $rx"; losses="$losses $loss"; rtts="$rtts $rtt"
    done
    pkill_ours; sleep 0.3
    echo "$name|$(echo $tcps | median)|$tcps|$(echo $rxs | median)|$rxs|$(echo $losses | median)|$(echo $rtts | median)|$rtts" >>"$RES/midonet.txt"
}

run_midonet() {
    if [ "$BUILD" = 1 ]; then
        log "building ($PROFILE)"
        local flag=; [ "$PROFILE" = release ] && flag=--release
        (cd "$ROOT" && cargo build $flag --locked -p midonet-bin -p midonet-cluster-bin -p midonet-agent-bin) >&2 ||
            { log "build failed"; echo "setup|build failed" >"$RES/midonet.txt"; return; }
    fi
    : >"$RES/midonet.txt"
    local dp first=1
    for dp in $DATAPATHS; do
        run_midonet_on "$dp" "$first"
        first=0
    done
}

# run_midonet_on PROVIDER CP: one sandbox whose agents run PROVIDER; rows "<provider>-l2"
# and "<provider>-l3"; the control-plane figures when CP is 1 (the first provider only:
# they measure the cluster and the agents' reaction, not the datapath's forwarding).
run_midonet_on() {
    local dp=$1 cp=$2
    log "midonet-rs ($dp): sandbox up (load $(loadavg))"
    if ! "$BIN/midonet" sandbox up "${SB_ARGS[@]}" --datapath "$dp" >"$RES/sandbox-up-$dp.txt" 2>&1; then
        log "sandbox up failed (see $RES/sandbox-up-$dp.txt):"; tail -20 "$RES/sandbox-up-$dp.txt" >&2
        echo "setup|$dp: sandbox up failed" >>"$RES/midonet.txt"
        cp "$SB_DIR"/*.log "$RES/" 2>/dev/null
        mn_down; return
    fi
    # The agent falls back to userspace when BPF cannot load, and logs it.
    if grep -qs "falling back" "$SB_DIR"/*agent*.log; then
        log "$dp: an agent fell back to another datapath; not measured as $dp"
        echo "setup|$dp: an agent fell back to userspace (see the agent logs)" >>"$RES/midonet.txt"
        cp "$SB_DIR"/*.log "$RES/" 2>/dev/null
        mn_down; return
    fi
    # Static neighbours: no figure includes ARP (as in the peers).
    local i j
    for i in 0 1; do j=$((1 - i))
        nsx "$(vmf $i ns)" ip neigh replace "$(vmf $j ip)" lladdr "$(vmf $j mac)" dev "$(vmf $i vm_if)" nud permanent
    done
    local g0 g3
    g0=$(jq -r '.bridges[0].router_port_mac' "$SB_DIR/sandbox.json"); g3=$(jq -r '.bridges[1].router_port_mac' "$SB_DIR/sandbox.json")
    [ -n "$g0" ] && [ "$g0" != null ] && nsx "$(vmf 0 ns)" ip neigh replace "$(vmf 0 gateway)" lladdr "$g0" dev "$(vmf 0 vm_if)" nud permanent
    [ -n "$g3" ] && [ "$g3" != null ] && nsx "$(vmf 3 ns)" ip neigh replace "$(vmf 3 gateway)" lladdr "$g3" dev "$(vmf 3 vm_if)" nud permanent
    measure_dp "$dp-l2" 0 1
    measure_dp "$dp-l3" 0 3
    if [ "$cp" = 1 ]; then
        log "midonet-rs ($dp): control plane ($CP_REPS reps, probe every ${PROBE_I}s)"
        python3 "$ROOT/bench/cpbench.py" measure "$SB_DIR/sandbox.json" "$RES/cp.json" --reps "$CP_REPS" --interval "$PROBE_I" \
            2> >(tee "$RES/cp.log" >&2) || log "control-plane measurement failed"
        echo "$dp" >"$RES/cp-provider.txt"
    fi
    for f in "$SB_DIR"/*.log; do [ -e "$f" ] && cp "$f" "$RES/$dp-$(basename "$f")"; done
    mn_down
}

# ---------------------------------------------------------------- peers
run_kernel() {
    log "kernel: $PEERS_DIR/kernel-baseline.sh vxlan (load $(loadavg))"
    REPS=$REPS DUR=$DUR UDP_LEN=$UDP_LEN PING_N=$PING_N PING_I=$PING_I \
        timeout 1500 "$PEERS_DIR/kernel-baseline.sh" vxlan >"$RES/kernel.txt" 2> >(tee "$RES/kernel.log" >&2)
}
run_ovn() {
    log "OVN: $PEERS_DIR/ovn.sh ls lr cp (load $(loadavg))"
    REPS=$REPS DUR=$DUR UDP_LEN=$UDP_LEN PING_N=$PING_N PING_I=$PING_I CP_REPS=$CP_REPS PROBE_I=$PROBE_I \
        timeout 1500 "$PEERS_DIR/ovn.sh" ls lr cp >"$RES/ovn.txt" 2> >(tee "$RES/ovn.log" >&2)
}

# ---------------------------------------------------------------- report
# field N (1-based, '|'-separated, trimmed) of the table row whose first field is $2
row() { awk -F'|' -v k="$2" -v n="$3" '{ f=$1; gsub(/ /,"",f) } f==k { x=$n; gsub(/^ +| +$/,"",x); print x; exit }' "$1" 2>/dev/null; }
# UDP rx runs of a peer variant, from its "(UDP rx ... runs:" block
rxruns() { awk -v k="$2:" '/^\(UDP rx/ {f=1; next} /^\)/ {f=0} f && $1==k { $1=""; sub(/^ +/,""); print; exit }' "$1" 2>/dev/null; }
cpmed() { jq -r ".$1.median // \"n/a\"" "$RES/cp.json" 2>/dev/null || echo n/a; }
cpruns() { jq -r ".$1.runs | map(if . == null then \"n/a\" else tostring end) | join(\" \")" "$RES/cp.json" 2>/dev/null || echo; }
ovncp() {  # "median (runs)" of an ovn.sh control-plane row
    awk -F'|' -v k="$1" 'index($1,k)==1 { m=$2; r=$3; gsub(/ /,"",m); gsub(/^ +| +$/,"",r); print m " (" r ")"; exit }' "$RES/ovn.txt" 2>/dev/null
}
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { if (v=="n/a" || v=="") print "n/a"; else if ((op==">=" && v+0>=t) || (op=="<=" && v+0<=t)) print "yes"; else print "**no**" }'; }

report() {
    local M=$RES/midonet.txt K=$RES/kernel.txt O=$RES/ovn.txt
    local mt mr ml mrt kt kr kt_rtt ot or ort lt lr lrt olt olr olrt
    # The ratios against the targets are those of the first provider (the default).
    local d0=${DATAPATHS%% *}
    mt=$(row "$M" "$d0-l2" 2); mr=$(row "$M" "$d0-l2" 4); ml=$(row "$M" "$d0-l2" 6); mrt=$(row "$M" "$d0-l2" 7)
    lt=$(row "$M" "$d0-l3" 2); lr=$(row "$M" "$d0-l3" 4); lrt=$(row "$M" "$d0-l3" 7)
    kt=$(row "$K" vxlan 2); kr=$(row "$K" vxlan 4); kt_rtt=$(row "$K" vxlan 7)
    ot=$(row "$O" ls 2); or=$(row "$O" ls 4); ort=$(row "$O" ls 7)
    olt=$(row "$O" lr 2); olr=$(row "$O" lr 4); olrt=$(row "$O" lr 7)
    local bind_r bind_c add_r add_c del_r del_c
    bind_r=$(cpmed bind_from_return); bind_c=$(cpmed bind_from_call)
    add_r=$(cpmed rule_add_from_return); add_c=$(cpmed rule_add_from_call)
    del_r=$(cpmed rule_del_from_return); del_c=$(cpmed rule_del_from_call)
    local r_tcp r_tcpk r_udp r_udpk r_rtt r_ltcp
    r_tcp=$(ratio "$mt" "$ot"); r_tcpk=$(ratio "$mt" "$kt"); r_udp=$(ratio "$mr" "$or"); r_udpk=$(ratio "$mr" "$kr")
    r_rtt=$(ratio "$mrt" "$ort"); r_ltcp=$(ratio "$lt" "$olt")
    local mfail; mfail=$(awk -F'|' '$1=="setup" {printf "%s%s", sep, $2; sep="; "}' "$M" 2>/dev/null)
    local r_ktcp r_kudp r_krtt r_kltcp r_kludp
    r_ktcp=$(ratio "$mt" "$kt"); r_kudp=$(ratio "$mr" "$kr"); r_krtt=$(ratio "$mrt" "$kt_rtt")
    r_kltcp=$(ratio "$lt" "$kt"); r_kludp=$(ratio "$lr" "$kr")
    local cpdp; cpdp=$(cat "$RES/cp-provider.txt" 2>/dev/null || echo "$d0")
    cat <<EOF
<!-- bench/run.sh:begin (generated; edit bench/run.sh, not this section) -->
## End to end: midonet-rs vs the kernel's VXLAN path vs OVN

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on this machine: $(nproc) CPUs, kernel $(uname -r),
load average before the run $LOAD0, after it $(loadavg) (other work on the machine
lowers every figure, OVN's most). Command: \`sudo $CMDLINE\`
(REPS=$REPS, medians of $REPS; TCP: iperf3 one stream ${DUR} s; UDP: iperf3 ${UDP_LEN} B payload
= 64 B frames, \`-b 0\`, delivered kpps; RTT: ping ${PING_N} × ${PING_I} s, average).
All three run one after the other in the same run, each with two "hypervisor" namespaces and
the VMs' traffic crossing a tunnel between them. Raw output: \`$RUN_DIR/results\` (copied to
\`bench/results/\`).${mfail:+

**midonet-rs: $mfail** (see \`bench/results/\`).}

| setup | TCP Gbit/s (runs) | UDP 64 B rx kpps (runs) | loss % | RTT ms (runs) |
| --- | ---: | ---: | ---: | ---: |
$(for dp in $DATAPATHS; do
    echo "| midonet-rs ($dp), one bridge, 2 hosts (VXLAN) | $(row "$M" "$dp-l2" 2) ($(row "$M" "$dp-l2" 3)) | $(row "$M" "$dp-l2" 4) ($(row "$M" "$dp-l2" 5)) | $(row "$M" "$dp-l2" 6) | $(row "$M" "$dp-l2" 7) ($(row "$M" "$dp-l2" 8)) |"
    echo "| midonet-rs ($dp), bridge → router → bridge, 2 hosts | $(row "$M" "$dp-l3" 2) ($(row "$M" "$dp-l3" 3)) | $(row "$M" "$dp-l3" 4) ($(row "$M" "$dp-l3" 5)) | $(row "$M" "$dp-l3" 6) | $(row "$M" "$dp-l3" 7) ($(row "$M" "$dp-l3" 8)) |"
done)
| kernel bridge + VXLAN (\`kernel-baseline.sh vxlan\`) | ${kt:-n/a} ($(row "$K" vxlan 3)) | ${kr:-n/a} ($(rxruns "$K" vxlan)) | $(row "$K" vxlan 6) | ${kt_rtt:-n/a} ($(row "$K" vxlan 8)) |
| OVN logical switch, 2 chassis (\`ovn.sh ls\`) | ${ot:-n/a} ($(row "$O" ls 3)) | ${or:-n/a} ($(rxruns "$O" ls)) | $(row "$O" ls 6) | ${ort:-n/a} ($(row "$O" ls 8)) |
| OVN switch → router → switch (\`ovn.sh lr\`) | ${olt:-n/a} ($(row "$O" lr 3)) | ${olr:-n/a} ($(rxruns "$O" lr)) | $(row "$O" lr 6) | ${olrt:-n/a} ($(row "$O" lr 8)) |

Control plane, ms (median of $CP_REPS; runs), UDP probe every ${PROBE_I} s, midonet-rs with
the $cpdp datapath. midonet-rs: from
the REST call's return, and in brackets from just before it was sent; OVN: from just before
\`ovn-nbctl\` starts (its figures include starting \`ovn-nbctl\`, about 8-12 ms). A negative
midonet-rs figure means the datapath had changed before the HTTP answer reached the caller
(the agents apply the store's watch event while the API is still answering); resolution ±1 ms.

| change | midonet-rs | OVN |
| --- | ---: | ---: |
| port bind → traffic flows (OVN: lsp-add) | ${bind_r} [${bind_c}] ($(cpruns bind_from_return)) | $(ovncp "lsp-add: traffic flows") |
| drop rule added → traffic stops (OVN: acl-add) | ${add_r} [${add_c}] ($(cpruns rule_add_from_return)) | $(ovncp "acl-add (drop ip4): traffic stops") |
| rule deleted → traffic flows (OVN: acl-del) | ${del_r} [${del_c}] ($(cpruns rule_del_from_return)) | $(ovncp "acl-del: traffic flows again") |

Ratios of midonet-rs with the $d0 datapath (the default provider):

| figure | value | target | met |
| --- | ---: | ---: | :---: |
| TCP / kernel VXLAN TCP (one bridge) | ${r_ktcp} | ≥ 1.05 | $(verdict "$r_ktcp" 1.05 ">=") |
| 64 B UDP delivered / kernel's (one bridge) | ${r_kudp} | ≥ 1.1 | $(verdict "$r_kudp" 1.1 ">=") |
| RTT / kernel RTT (one bridge) | ${r_krtt} | ≤ 1.0 | $(verdict "$r_krtt" 1.0 "<=") |
| TCP through the router / kernel plain bridging TCP | ${r_kltcp} | ≥ 1.0 | $(verdict "$r_kltcp" 1.0 ">=") |
| UDP through the router / kernel plain bridging UDP | ${r_kludp} | ≥ 1.0 | $(verdict "$r_kludp" 1.0 ">=") |
| midonet-rs TCP / OVN TCP (one bridge / ls) | ${r_tcp} | ≥ 3 | $(verdict "$r_tcp" 3 ">=") |
| midonet-rs TCP / OVN TCP (router / lr) | ${r_ltcp} | ≥ 3 | $(verdict "$r_ltcp" 3 ">=") |
| midonet-rs UDP rx rate / OVN | ${r_udp} | ≥ 2 | $(verdict "$r_udp" 2 ">=") |
| midonet-rs RTT / OVN RTT | ${r_rtt} | ≤ 0.5 | $(verdict "$r_rtt" 0.5 "<=") |
| rule add → enforced, ms (from API return) | ${add_r} | ≤ 5 | $(verdict "$add_r" 5 "<=") |
| port bind → traffic, ms (from API return) | ${bind_r} | ≤ 10 | $(verdict "$bind_r" 10 "<=") |
<!-- bench/run.sh:end -->
EOF
}

splice_doc() {  # replace the marked section of $DOC (or append it)
    local section=$1
    mkdir -p "$(dirname "$DOC")"
    [ -f "$DOC" ] || printf '# Performance\n\nNumbers measured on the project machine (2 vCPU).\n\n' >"$DOC"
    python3 - "$DOC" "$section" <<'PY'
import re, sys
doc, sec = sys.argv[1], open(sys.argv[2]).read().rstrip("\n") + "\n"
text = open(doc).read()
pat = re.compile(r"<!-- bench/run.sh:begin.*?<!-- bench/run.sh:end -->\n?", re.S)
text = pat.sub(lambda _: sec, text, count=1) if pat.search(text) else text.rstrip("\n") + "\n\n" + sec
open(doc, "w").write(text)
PY
}

LOAD0=$(loadavg)
log "steps: $STEPS (REPS=$REPS DUR=$DUR; load $LOAD0)"
for s in $STEPS; do
    case $s in
        midonet) run_midonet ;;
        kernel) run_kernel ;;
        ovn) run_ovn ;;
        report) ;;
        *) log "unknown step $s (midonet kernel ovn)" ;;
    esac
done
report >"$RES/section.md"
cat "$RES/section.md"
[ "$STEPS" = report ] && exit 0
stamp=$(date -u +%Y%m%d-%H%M)
mkdir -p "$ROOT/bench/results"
{ echo "# bench/run.sh $stamp: $CMDLINE"; for f in midonet.txt kernel.txt ovn.txt cp.json cp.log $(cd "$RES" && ls sandbox-up-*.txt 2>/dev/null) section.md; do
      [ -f "$RES/$f" ] && { echo; echo "## $f"; cat "$RES/$f"; }; done; } >"$ROOT/bench/results/$stamp.txt"
# The doc only takes a complete run: all three setups measured.
complete=1
for dp in $DATAPATHS; do
    [ -n "$(row "$RES/midonet.txt" "$dp-l2" 2)" ] && [ "$(row "$RES/midonet.txt" "$dp-l2" 2)" != n/a ] || complete=0
done
[ -n "$(row "$RES/kernel.txt" vxlan 2)" ] || complete=0
[ -n "$(row "$RES/ovn.txt" ls 2)" ] || complete=0
if [ "$UPDATE_DOC" = 1 ] && [ "$STEPS" = "midonet kernel ovn" ]; then
    if [ $complete = 1 ]; then
        splice_doc "$RES/section.md"
        log "updated $DOC"
    else
        log "NOT updating $DOC: some setup has no figures (see above)"
    fi
fi
log "raw results in $RES and bench/results/$stamp.txt"
