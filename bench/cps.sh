#!/usr/bin/env bash
# bench/cps.sh -- new TCP connections per second through the virtual router
# (issue 13), next to the kernel's routed path measured in the same run.
#
#   sudo bench/cps.sh                 midonet-rs (each provider in DATAPATHS) and the kernel peer
#   sudo bench/cps.sh midonet         midonet-rs only
#   sudo bench/cps.sh kernel          the peer only
#   sudo bench/cps.sh down            remove what a KEEP=1 run left running
#   sudo bench/cps.sh direct kernel   the ceiling: wrk and nginx on the two ends of one veth
#                                     pair (no forwarding, no tunnel), beside the peer: the
#                                     rate no datapath between them could exceed on this machine
#
# midonet-rs: `midonet sandbox up --hosts 2 --vms-per-host 1` (VM 1 on host 1),
# then an "outside" namespace behind an uplink port of the sandbox router bound
# on host 0:
#
#   VM 1 (host 1) ── bridge ── router ── uplink port 203.0.113.2/24 (bound on host 0)
#       10.0.1.x   VXLAN to host 0        └── veth ── outside ns 203.0.113.1/24, nginx :8080,
#                                                      route back to 10.0.0.0/8 (no NAT)
#
# wrk in VM 1, `Connection: close` (every request a new TCP connection),
# THREADS threads, CONNS connections, WINDOWS consecutive DUR-second windows
# per client setting: `wide` (ephemeral ports 1024-65535, tcp_tw_reuse=1, what
# the peer script sets) and `defaults` (Linux's own: 4-tuples get reused while
# the server holds them in TIME_WAIT). The agents' miss and invalidation
# counters are read before and after each window.
#
# First-packet latency (FP_N sequential connect() calls from the VM, SO_LINGER 0
# so no TIME_WAIT builds up): warm megaflow, then cold (a router chain with a
# TCP source-port rule makes every SYN a miss); added latency = cold - warm.
#
# Peer: $PEERS_DIR/kernel-nat.sh route (bridge + VXLAN to a routing gateway on
# the other host), REPS=WINDOWS, once per client setting, read-only.
#
# NAT=1 (issue 8): the outside has no route back; the router SNATs what leaves
# by the uplink to 203.0.113.2 (ports 1024-65535, a `snat` rule in its outbound
# filter, `rev_snat` in its inbound filter), so every connection is a new
# binding and a new exact flow on both hosts, with its state replicated to the
# gateway. The peer is then `kernel-nat.sh nat` (nftables conntrack +
# masquerade). The first-packet probe alternates routed cold and SNAT rounds in
# the same sandbox and reports what SNAT adds (see first_packet_nat).
#
# CT=1 (with NAT=1): the router also tracks connections (a `matchForwardFlow`
# accept for what comes from 10/8, a `matchReturnFlow` accept after `rev_snat`,
# and a drop), as a cloud's security groups would on the reply path.
#
# RSS_CONNS=N (with NAT=1; issue 8, "agent RSS with 100k live connections"):
# after the windows, the VM keeps N UDP connections to the outside alive (N
# 5-tuples: destination ports 1024-61023 from one socket per 60000, sent in a
# loop at RSS_PPS datagrams/s for RSS_SECS s; the outside drops them, so no
# replies), each a tracked connection and a SNAT binding on the VM's host and
# a replicated copy on the gateway; the agents' RSS (VmRSS, RssAnon) and
# table sizes are read before and after. BPF flow tables are kernel memory,
# not in the agents' RSS (the ebpf provider holds at most 65536 flows; the
# rest of the tuples miss again on every packet and are re-simulated).
#
# PAIRS=N (with both midonet and kernel): instead of WINDOWS midonet-rs windows
# and then the peer's, N back-to-back pairs per client setting of one peer
# window and one midonet-rs window, alternating which goes first, each
# followed by GAP seconds (the peer sets up and removes its namespaces around
# each of its windows while the sandbox idles; the kernel finishes removing
# them in a worker after the script has exited), and the median of the
# per-pair ratios: the method of
# bench/paired.sh, for a figure the machine's drift between the two halves of
# a run cannot move. Lines `[pair midonet-<provider> <client>] pair i: ...`.
#
# GAP=S idles S seconds after each midonet-rs window. The kernel peer
# (kernel-nat.sh) runs a DUR-second iperf3 between its windows, during which
# the client's TIME_WAIT sockets age (60 s each); back-to-back windows give
# them no such pause, and with default clients they then fill the client's
# port range sooner (see docs/PERFORMANCE.md, issue 13). GAP=$DUR matches it.
#
# MISS_WORKERS="0 1" runs each provider once per agent `miss_workers` setting
# (0 = simulate on the datapath thread), labelled `<provider>-w<N>`; unset, the
# agents' default.
# Env: KEEP=1 leaves the last sandbox running for inspection. UNDERLAY_LINK=pair (see below).
#      DATAPATHS="userspace ebpf" CLIENTS="wide defaults" WINDOWS=3 DUR=10 CONNS=64 THREADS=2
#      FP_N=300 FP_ROUNDS=3 (first-packet probes per round, 0 = skip)  NAT=0
#      RSS_CONNS=0 RSS_PPS=5000 RSS_SECS=45 GAP=$DUR PAIRS=0
#      PROFILE=release BUILD=1 RUN_DIR=/tmp/midonet-cps PEERS_DIR=<repo>/../shared/peers
# Output: one line per window, `[<setup> <client>] window N: cps=... misses=... invalidated=...`,
# and a summary table in $RUN_DIR/results/summary.md.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATAPATHS=${DATAPATHS:-userspace ebpf}
CLIENTS=${CLIENTS:-wide defaults}
WINDOWS=${WINDOWS:-3}
DUR=${DUR:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
FP_N=${FP_N:-300}
FP_ROUNDS=${FP_ROUNDS:-3}
PROFILE=${PROFILE:-release}
BUILD=${BUILD:-1}
RUN_DIR=${RUN_DIR:-/tmp/midonet-cps}
NAT=${NAT:-0}
CT=${CT:-0}
RSS_CONNS=${RSS_CONNS:-0}
RSS_PPS=${RSS_PPS:-5000}
RSS_SECS=${RSS_SECS:-45}
GAP=${GAP:-$DUR}
PAIRS=${PAIRS:-0}
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
BIN=$ROOT/target/$PROFILE
SB_DIR=$RUN_DIR/sandbox
RES=$RUN_DIR/results
P=mnc                       # prefix of everything this script creates
OUT_NS=${P}out
API=127.0.0.1:18191
# The hosts' underlay: `pair` (one veth between the two host namespaces) is how the
# peers wire theirs; `bridge` (the sandbox's default, an underlay namespace with a
# bridge) costs every tunnelled packet a bridge and a veth more (figures before
# 2026-12-04 were taken that way).
UNDERLAY_LINK=${UNDERLAY_LINK:-pair}
SB_ARGS=(--hosts 2 --vms-per-host 1 --prefix $P --state-dir "$SB_DIR" --api $API
         --grpc-port 18192 --underlay 198.18.67.0/24 --underlay-link "$UNDERLAY_LINK")

log() { echo "[$(date +%T)] $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2}'; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# One DUR-second wrk window from namespace NS against URL: new connections per second.
wrk_cps() {  # NS URL
    nsx "$1" wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" -H 'Connection: close' "$2" 2>/dev/null |
        awk '/Requests\/sec/ {printf "%d", $2}'
}
sb() { jq -r "$1" "$SB_DIR/sandbox.json"; }
api() {  # METHOD PATH [BODY] -> response body; fails on HTTP >= 400
    curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "http://$API/midonet-api/$2"
}
put_router() {  # JQ-FILTER [JQ-ARGS...]: the sandbox router, changed by the filter
    local router; router=$(sb '.router_id')
    api GET "routers/$router" | jq "${@:2}" "$1" |
        curl -sf -X PUT -H 'Content-Type: application/json' -d @- "http://$API/midonet-api/routers/$router" >/dev/null
}
cold_chain() {  # -> id of a chain whose rule on the TCP source port makes every new connection's SYN a miss
    local c
    c=$(api POST chains '{"name":"cps-cold"}' | jq -r .id) || return 1
    api POST "chains/$c/rules" '{"type":"drop","nwProto":6,"tpSrc":{"start":1,"end":1023}}' >/dev/null || return 1
    echo "$c"
}
metric() {  # HOST_NS NAME -> value summed over label sets
    nsx "$1" curl -s --max-time 2 http://127.0.0.1:7300/metrics 2>/dev/null |
        awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d", s }'
}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for t in wrk nginx jq curl; do command -v $t >/dev/null || { echo "needs $t (apt-get install wrk nginx-light jq curl)" >&2; exit 1; }; done

down() {
    [ -f "$RUN_DIR/nginx.pid" ] && kill "$(cat "$RUN_DIR/nginx.pid")" 2>/dev/null
    rm -f "$RUN_DIR/nginx.pid"
    ip netns del $OUT_NS 2>/dev/null
    ip netns del ${P}dc 2>/dev/null; ip netns del ${P}ds 2>/dev/null   # run_direct's
    [ -x "$BIN/midonet" ] && "$BIN/midonet" sandbox down --state-dir "$SB_DIR" --prefix $P >/dev/null 2>&1
}
trap 'log interrupted; down; exit 130' INT TERM

# uplink: the outside namespace behind a router port bound on host 0.
uplink() {
    local h0 h0id router rp
    h0=$(sb '.hosts[0].ns'); h0id=$(sb '.hosts[0].id'); router=$(sb '.router_id')
    ip netns add $OUT_NS && ip -n $OUT_NS link set lo up
    ip link add ${P}up netns "$h0" type veth peer name ${P}op netns $OUT_NS
    ip -n "$h0" link set ${P}up up
    ip -n $OUT_NS addr add 203.0.113.1/24 dev ${P}op
    ip -n $OUT_NS link set ${P}op up
    [ "$NAT" = 1 ] || ip -n $OUT_NS route add 10.0.0.0/8 via 203.0.113.2
    rp=$(api POST "routers/$router/ports" \
        '{"type":"Router","portAddress":"203.0.113.2","networkAddress":"203.0.113.0","networkLength":24}' | jq -r .id) ||
        return 1
    api POST "routers/$router/routes" "{\"srcNetworkAddr\":\"0.0.0.0\",\"srcNetworkLength\":0,\"dstNetworkAddr\":\"203.0.113.0\",\"dstNetworkLength\":24,\"nextHopPort\":\"$rp\"}" >/dev/null || return 1
    api POST "hosts/$h0id/ports" "{\"portId\":\"$rp\",\"interfaceName\":\"${P}up\"}" >/dev/null || return 1
    [ "$NAT" = 1 ] || return 0
    local pre post
    pre=$(api POST chains '{"name":"cps-nat-in"}' | jq -r .id) || return 1
    post=$(api POST chains '{"name":"cps-nat-out"}' | jq -r .id) || return 1
    if [ "$CT" = 1 ]; then
        # Connection tracking at the router as well: replies, restored, must be
        # return flows of a tracked connection (the forward packets are tracked).
        # (A rule posted without a position goes first, as in MidoNet 5.)
        api POST "chains/$pre/rules" '{"type":"rev_snat","flowAction":"continue","nwDstAddress":"203.0.113.2","nwDstLength":32,"position":1}' >/dev/null || return 1
        api POST "chains/$pre/rules" '{"type":"accept","matchReturnFlow":true,"position":2}' >/dev/null || return 1
        api POST "chains/$pre/rules" '{"type":"accept","matchForwardFlow":true,"nwSrcAddress":"10.0.0.0","nwSrcLength":8,"position":3}' >/dev/null || return 1
        api POST "chains/$pre/rules" '{"type":"drop","position":4}' >/dev/null || return 1
    else
        api POST "chains/$pre/rules" '{"type":"rev_snat","flowAction":"accept","nwDstAddress":"203.0.113.2","nwDstLength":32}' >/dev/null || return 1
    fi
    api POST "chains/$post/rules" "{\"type\":\"snat\",\"flowAction\":\"accept\",\"outPorts\":[\"$rp\"],\"natTargets\":[{\"addressFrom\":\"203.0.113.2\",\"addressTo\":\"203.0.113.2\",\"portFrom\":1024,\"portTo\":65535}]}" >/dev/null || return 1
    put_router '.inboundFilterId = $i | .outboundFilterId = $o' --arg i "$pre" --arg o "$post"
}

nginx_up() {  # NS ADDR
    cat >"$RUN_DIR/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $RUN_DIR/nginx.pidfile; error_log /dev/null;
events { worker_connections 4096; }
http { access_log off; keepalive_timeout 0;
  server { listen $2:8080 reuseport backlog=4096; location / { return 200 "ok\n"; } } }
NGX
    ip netns exec "$1" nginx -c "$RUN_DIR/nginx.conf" >/dev/null 2>&1 &
    echo $! >"$RUN_DIR/nginx.pid"
    sleep 0.5
}

client_sysctls() {  # VM_NS CLIENT
    if [ "$2" = wide ]; then
        nsx "$1" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
    else
        nsx "$1" sysctl -qw net.ipv4.ip_local_port_range="32768 60999" net.ipv4.tcp_tw_reuse=2
    fi
}

# connect_probe VM_NS: FP_N sequential connect() calls to the outside server
# (SO_LINGER 0, so no TIME_WAIT builds up); prints "p50 p99" in microseconds.
connect_probe() {
    nsx "$1" python3 - "$FP_N" <<'PY'
import socket, sys, time
n = int(sys.argv[1]); v = []
for _ in range(n):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\0\0\0\0\0\0\0')
    t = time.perf_counter(); s.connect(("203.0.113.1", 8080)); v.append((time.perf_counter() - t) * 1e6); s.close()
    time.sleep(0.002)
v.sort(); print("%.0f %.0f" % (v[len(v) // 2], v[int(len(v) * 0.99)]))
PY
}

# first_packet VM_NS PROVIDER: connect() time to the outside server, N sequential
# connections, with the path's megaflow warm, then cold: a router inbound chain
# with a rule on the TCP source port (no privileged source ports) makes every
# new connection's SYN a miss on the VM's host. Added first-packet latency =
# cold - warm, at p50 and p99.
first_packet() {
    local vm=$1 dp=$2 chain warm cold
    probe() { connect_probe "$vm"; }
    filter() { put_router '.inboundFilterId = $c' --argjson c "$1"; }  # CHAIN-ID or null
    chain=$(cold_chain) || return 1
    # Warm and cold in turn, FP_ROUNDS times (the machine's noise moves both);
    # the figure is the median over rounds of cold - warm.
    local r adds50="" adds99="" rows=""
    for r in $(seq "$FP_ROUNDS"); do
        warm=$(probe)
        filter "\"$chain\"" || return 1
        sleep 0.5
        cold=$(probe)
        filter null || return 1
        sleep 0.5
        adds50="$adds50 $(( ${cold%% *} - ${warm%% *} ))"; adds99="$adds99 $(( ${cold##* } - ${warm##* } ))"
        rows="$rows warm=${warm// //} cold=${cold// //};"
    done
    local med50 med99
    med50=$(echo $adds50 | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    med99=$(echo $adds99 | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "[midonet-$dp] first packet (connect us p50/p99 per round:$rows) added p50=$med50 p99=$med99 (medians of $FP_ROUNDS rounds)" |
        tee -a "$RES/first-packet.txt"
}

# miss_phases HOST_NS LABEL: where the host's misses spent their time so far
# (the agent's dp_miss_phase_seconds / dp_misses_timed; eBPF provider only),
# mean microseconds per miss.
miss_phases() {
    local m
    m=$(nsx "$1" curl -s --max-time 2 http://127.0.0.1:7300/metrics 2>/dev/null) || return 0
    echo "$m" | awk -v l="$2" '
        /^midonet_agent_dp_misses_timed_total / { n = $2 }
        /^midonet_agent_dp_miss_phase_seconds_total\{/ {
            match($1, /phase="[a-z_]+"/); p = substr($1, RSTART + 7, RLENGTH - 8); t[p] = $2 }
        END { if (n > 0) printf "[midonet-%s] miss phases, mean us over %d misses: ring_wait=%.1f handle=%.1f install=%.1f execute=%.1f\n",
              l, n, t["ring_wait"] * 1e6 / n, t["handle"] * 1e6 / n, t["install"] * 1e6 / n, t["execute"] * 1e6 / n }' |
        tee -a "$RES/first-packet.txt"
}

# first_packet_nat VM_NS PROVIDER: connect() times through SNAT against the
# non-NAT first packet, in the same sandbox, FP_ROUNDS rounds of FP_N each:
# routed cold (no SNAT; the cold chain of first_packet makes every SYN a miss
# on the VM's host), then through SNAT (every connection a new binding, so
# every SYN a miss on the VM's host and its SYN-ACK one on the gateway).
# NAT added = median over rounds of (SNAT p50 - routed cold p50).
first_packet_nat() {
    local vm=$1 dp=$2 r rows="" p50s="" p99s="" adds="" v c cold pre post
    filters() {  # INBOUND-ID-or-null OUTBOUND-ID-or-null
        put_router '.inboundFilterId = $i | .outboundFilterId = $o' --argjson i "$1" --argjson o "$2"
    }
    read -r pre post < <(api GET "routers/$(sb '.router_id')" | jq -c '.inboundFilterId, .outboundFilterId' | paste -sd' ')
    cold=$(cold_chain) || return 1
    # The route back exists only for the routed rounds' duration.
    ip -n $OUT_NS route add 10.0.0.0/8 via 203.0.113.2 || return 1
    for r in $(seq "$FP_ROUNDS"); do
        filters "\"$cold\"" null || return 1; sleep 0.5
        c=$(connect_probe "$vm")
        filters "$pre" "$post" || return 1; sleep 0.5
        v=$(connect_probe "$vm")
        rows="$rows cold=${c// //} nat=${v// //};"; p50s="$p50s ${v%% *}"; p99s="$p99s ${v##* }"
        adds="$adds $(( ${v%% *} - ${c%% *} ))"
    done
    ip -n $OUT_NS route del 10.0.0.0/8 via 203.0.113.2
    echo "[midonet-$dp nat] first packet through SNAT (connect us p50/p99 per round:$rows) p50=$(median $p50s) p99=$(median $p99s); added over routed cold p50=$(median $adds) (medians of $FP_ROUNDS rounds)" |
        tee -a "$RES/first-packet.txt"
}

# agent_pid HOST_NS: the agent process in that host namespace.
agent_pid() {
    local p
    for p in $(ip netns pids "$1"); do
        [ "$(cat /proc/$p/comm 2>/dev/null)" = midonet-agent ] && { echo "$p"; return; }
    done
}

# agent_mem HOST_NS: "<VmRSS kB> <RssAnon kB> <connections> <bindings> <flows>"
agent_mem() {
    local pid rss anon ct nat flows
    pid=$(agent_pid "$1")
    rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status); anon=$(awk '/^RssAnon/ {print $2}' /proc/$pid/status)
    ct=$(metric "$1" midonet_agent_conntrack_entries)
    nat=$(nsx "$1" curl -s --max-time 5 'http://127.0.0.1:7300/nat?limit=0' | jq -r .count)
    flows=$(metric "$1" midonet_agent_flows)
    echo "$rss $anon $ct $nat $flows"
}

# state_rss VM_NS PROVIDER: RSS_CONNS live UDP connections through SNAT; the
# agents' memory before and after (see RSS_CONNS above).
state_rss() {
    local vm=$1 dp=$2 h0 h1 b0 b1 a0 a1 sent
    h0=$(sb '.hosts[0].ns'); h1=$(sb '.hosts[1].ns')
    nsx $OUT_NS nft -f - <<'NFT' || return 1
table inet mnc_rss {
    chain in {
        type filter hook input priority 0;
        udp dport 1024-65535 drop
    }
}
NFT
    b1=$(agent_mem "$h1"); b0=$(agent_mem "$h0")
    sent=$(nsx "$vm" python3 - "$RSS_CONNS" "$RSS_PPS" "$RSS_SECS" <<'PY'
import socket, sys, time
n, pps, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
per = 60000
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range((n + per - 1) // per)]
t0 = time.perf_counter(); sent = 0
while time.perf_counter() - t0 < secs:
    for i in range(n):
        socks[i // per].sendto(b"x", ("203.0.113.1", 1024 + i % per))
        sent += 1
        if sent % 200 == 0:
            d = t0 + sent / pps - time.perf_counter()
            if d > 0:
                time.sleep(d)
            if time.perf_counter() - t0 >= secs:
                break
print(sent)
PY
)
    a1=$(agent_mem "$h1"); a0=$(agent_mem "$h0")
    nsx $OUT_NS nft delete table inet mnc_rss
    local line
    for line in "vm-host $b1 $a1" "gateway $b0 $a0"; do
        # shellcheck disable=SC2086
        set -- $line
        echo "[midonet-$dp rss] $1: $RSS_CONNS UDP connections, $sent datagrams in ${RSS_SECS}s;" \
             "VmRSS $2 -> $7 kB, RssAnon $3 -> $8 kB; connections $4 -> $9, bindings $5 -> ${10}, flows $6 -> ${11};" \
             "RSS per connection (per binding added) $(( ($7 - $2) * 1024 / ( ${10} - $5 > 0 ? ${10} - $5 : 1 ) )) bytes" | tee -a "$RES/rss.txt"
    done
}

run_midonet_on() {  # PROVIDER [LABEL]
    local dp=$1 tag=${2:-$1} vm h0 h1 client w
    log "midonet-rs ($tag): sandbox up"
    if ! "$BIN/midonet" sandbox up "${SB_ARGS[@]}" --datapath "$dp" >"$RES/sandbox-up-$tag.txt" 2>&1; then
        log "sandbox up failed:"; tail -20 "$RES/sandbox-up-$tag.txt" >&2; down; return
    fi
    h0=$(sb '.hosts[0].ns'); h1=$(sb '.hosts[1].ns')
    vm=$(sb '.vms[] | select(.host == 1) | .ns' | head -1)
    uplink || { log "uplink setup failed"; down; return; }
    nginx_up $OUT_NS 203.0.113.1
    local ok=0
    for _ in $(seq 50); do nsx "$vm" ping -c1 -W1 203.0.113.1 >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
    [ $ok = 1 ] || { log "no ping from $vm to the outside"; down; return; }
    if [ "$FP_N" -gt 0 ] && [ "$NAT" = 1 ]; then
        first_packet_nat "$vm" "$tag"
    elif [ "$FP_N" -gt 0 ]; then
        first_packet "$vm" "$tag" || log "first-packet probe failed"
    fi
    if [ "$FP_N" -gt 0 ]; then
        miss_phases "$h1" "$tag vm-host"; miss_phases "$h0" "$tag gw-host"
    fi
    [ "$PAIRS" -gt 0 ] && run_pairs "$vm" "$tag"
    for client in $CLIENTS; do
        [ "$PAIRS" -gt 0 ] && break
        client_sysctls "$vm" "$client"
        for w in $(seq "$WINDOWS"); do
            local m0 i0 m1 i1 n0 j0 n1 j1 cps
            m0=$(metric "$h1" midonet_agent_misses_total); i0=$(metric "$h1" midonet_agent_invalidated_flows_total)
            n0=$(metric "$h0" midonet_agent_misses_total); j0=$(metric "$h0" midonet_agent_invalidated_flows_total)
            cps=$(wrk_cps "$vm" http://203.0.113.1:8080/)
            m1=$(metric "$h1" midonet_agent_misses_total); i1=$(metric "$h1" midonet_agent_invalidated_flows_total)
            n1=$(metric "$h0" midonet_agent_misses_total); j1=$(metric "$h0" midonet_agent_invalidated_flows_total)
            echo "[midonet-$tag$([ "$NAT" = 1 ] && echo -nat) $client] window $w: cps=${cps:-n/a} vm-host misses=$((m1 - m0)) invalidated=$((i1 - i0)) gw-host misses=$((n1 - n0)) invalidated=$((j1 - j0)) (load $(loadavg))" |
                tee -a "$RES/windows.txt"
            [ "$GAP" -gt 0 ] && sleep "$GAP"
        done
        # Let the server's TIME_WAIT drain between client settings.
        sleep 2
    done
    [ "$RSS_CONNS" -gt 0 ] && [ "$NAT" = 1 ] && { state_rss "$vm" "$tag" || log "RSS probe failed"; }
    # Which megaflows carried the load (busiest first).
    "$BIN/midonet" flows --netns "$h1" --limit 5 >"$RES/flows-$tag-h1.txt" 2>&1
    "$BIN/midonet" flows --netns "$h0" --limit 5 >"$RES/flows-$tag-h0.txt" 2>&1
    nsx "$h1" curl -s http://127.0.0.1:7300/metrics >"$RES/metrics-$tag-h1.txt" 2>/dev/null
    nsx "$h0" curl -s http://127.0.0.1:7300/metrics >"$RES/metrics-$tag-h0.txt" 2>/dev/null
    for f in "$SB_DIR"/*.log; do [ -e "$f" ] && cp "$f" "$RES/$tag-$(basename "$f")"; done
    if [ "${KEEP:-0}" = 1 ]; then log "KEEP=1: left running; \`$0 down\` removes it"; else down; fi
}

# PAIRS=N: N back-to-back pairs per client setting of one kernel `route` (or
# `nat`) window (kernel-nat.sh REPS=1) and one midonet-rs window, the order
# alternating, each followed by GAP; the ratio of each pair and their median.
run_pairs() {  # VM_NS TAG
    local vm=$1 tag=$2 client i k m r ratios side
    local mode=route; [ "$NAT" = 1 ] && mode=nat
    for client in $CLIENTS; do
        local defaults=0; [ "$client" = defaults ] && defaults=1
        ratios=""
        for i in $(seq "$PAIRS"); do
            k=""; m=""
            for side in $([ $((i % 2)) = 1 ] && echo "kernel midonet" || echo "midonet kernel"); do
                if [ "$side" = kernel ]; then
                    k=$(CLIENT_DEFAULTS=$defaults REPS=1 DUR=$DUR CONNS=$CONNS THREADS=$THREADS \
                        "$PEERS_DIR/kernel-nat.sh" $mode 2>/dev/null | sed -n 's/^\['$mode'\] rep 1: cps=\([0-9]*\).*/\1/p')
                else
                    client_sysctls "$vm" "$client"
                    m=$(wrk_cps "$vm" http://203.0.113.1:8080/)
                fi
                # After either side: the kernel removes the peer's namespaces
                # in a worker after kernel-nat.sh has exited.
                [ "$GAP" -gt 0 ] && sleep "$GAP"
            done
            r=n/a; [ -n "$k" ] && [ -n "$m" ] && [ "$k" -gt 0 ] && r=$(awk -v a="$m" -v b="$k" 'BEGIN {printf "%.2f", a / b}')
            ratios="$ratios $r"
            echo "[pair midonet-$tag $client] pair $i: kernel-$mode=${k:-n/a} midonet=${m:-n/a} ratio=$r (load $(loadavg))" |
                tee -a "$RES/pairs.txt"
        done
        echo "[pair midonet-$tag $client] median ratio over $PAIRS pairs: $(median $(echo $ratios | tr ' ' '\n' | grep -v n/a))" |
            tee -a "$RES/pairs.txt"
    done
}

run_kernel() {
    local client
    for client in $CLIENTS; do
        local defaults=0; [ "$client" = defaults ] && defaults=1
        local mode=route; [ "$NAT" = 1 ] && mode=nat
        log "kernel: kernel-nat.sh $mode ($client client)"
        CLIENT_DEFAULTS=$defaults REPS=$WINDOWS DUR=$DUR CONNS=$CONNS THREADS=$THREADS "$PEERS_DIR/kernel-nat.sh" $mode 2>/dev/null |
            sed -n 's/^\['$mode'\] rep \([0-9]*\): cps=\([^ ]*\).*(loadavg: \(.*\))/[kernel-'$mode' '"$client"'] window \1: cps=\2 (load \3)/p' |
            tee -a "$RES/windows.txt"
    done
}

# The ceiling: the same client and server with nothing between them but one veth pair.
run_direct() {
    local c=${P}dc srv=${P}ds client w cps
    log "direct: wrk and nginx on one veth pair"
    ip netns add $c && ip netns add $srv || { log "direct: namespaces exist"; return; }
    ip -n $c link set lo up; ip -n $srv link set lo up
    ip link add ${P}dv netns $c type veth peer name ${P}dw netns $srv
    ip -n $c addr add 10.99.0.1/24 dev ${P}dv; ip -n $srv addr add 10.99.0.2/24 dev ${P}dw
    ip -n $c link set ${P}dv up; ip -n $srv link set ${P}dw up
    nginx_up $srv 10.99.0.2
    for client in $CLIENTS; do
        client_sysctls $c "$client"
        for w in $(seq "$WINDOWS"); do
            cps=$(wrk_cps $c http://10.99.0.2:8080/)
            echo "[direct $client] window $w: cps=${cps:-n/a} (load $(loadavg))" | tee -a "$RES/windows.txt"
        done
        sleep 2
    done
    [ -f "$RUN_DIR/nginx.pid" ] && kill "$(cat "$RUN_DIR/nginx.pid")" 2>/dev/null
    rm -f "$RUN_DIR/nginx.pid"
    ip netns del $c; ip netns del $srv
}

summary() {
    {
        echo "| setup | client | cps per ${DUR} s window |"
        echo "| --- | --- | --- |"
        awk '{ k = $1 " " $2; sub(/^\[/, "", k); sub(/\]$/, "", k)
               for (i = 1; i <= NF; i++) if ($i ~ /^cps=/) { v = substr($i, 5) }
               row[k] = row[k] " " v; if (!(k in seen)) { seen[k] = 1; order[++n] = k } }
             END { for (i = 1; i <= n; i++) { split(order[i], p, " "); print "| " p[1] " | " p[2] " |" row[order[i]] " |" } }' \
            "$RES/windows.txt"
    } >"$RES/summary.md"
    [ -s "$RES/pairs.txt" ] && { echo; cat "$RES/pairs.txt"; } >>"$RES/summary.md"
    [ -s "$RES/first-packet.txt" ] && { echo; cat "$RES/first-packet.txt"; } >>"$RES/summary.md"
    [ -s "$RES/rss.txt" ] && { echo; cat "$RES/rss.txt"; } >>"$RES/summary.md"
    cat "$RES/summary.md"
}

mkdir -p "$RES"; : >"$RES/windows.txt"; : >"$RES/pairs.txt"; : >"$RES/first-packet.txt"; : >"$RES/rss.txt"
what=${*:-midonet kernel}
[ "$what" = down ] && { down; exit 0; }
if [[ " $what " == *" midonet "* ]]; then
    if [ "$BUILD" = 1 ]; then
        flag=; [ "$PROFILE" = release ] && flag=--release
        (cd "$ROOT" && cargo build $flag --locked -p midonet-bin -p midonet-cluster-bin -p midonet-agent-bin) >&2 ||
            { log "build failed"; exit 1; }
    fi
    for dp in $DATAPATHS; do
        for mw in ${MISS_WORKERS:-default}; do
            if [ "$mw" = default ]; then
                unset MIDONET_AGENT_MISS_WORKERS; run_midonet_on "$dp"
            else
                export MIDONET_AGENT_MISS_WORKERS=$mw; run_midonet_on "$dp" "$dp-w$mw"
            fi
        done
    done
fi
[[ " $what " == *" direct "* ]] && run_direct
[[ " $what " == *" kernel "* ]] && [ "$PAIRS" = 0 ] && run_kernel
summary
