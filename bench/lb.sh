#!/usr/bin/env bash
# bench/lb.sh -- L4 load balancing (issue 9): requests and new connections per
# second through a VIP with 3 members, against the same traffic sent straight
# to one member, and the kernel's own load balancer on the same shape of
# network, all in one run.
#
#   sudo bench/lb.sh            midonet-rs (each provider in DATAPATHS), then the kernel peer
#   sudo bench/lb.sh midonet    midonet-rs only
#   sudo bench/lb.sh kernel     the peer only
#   sudo bench/lb.sh down       remove what a KEEP=1 run left running
#
# midonet-rs: `midonet sandbox up --hosts 2 --vms-per-host 3`; the client is an
# "outside" namespace behind an uplink port of the sandbox router bound on
# host 0; the router has a load balancer with VIP 198.51.100.10:8080 over the
# three VMs of host 1, each running nginx on :8080:
#
#   client ns 203.0.113.1 ── uplink (host 0) ── router [VIP → member, DNAT + flow state]
#                                                  └── bridges ── VM (host 1) ×3
#
# Every request crosses the tunnel, through the VIP or not (so the two
# targets compare like with like); the members' replies are
# reverse-translated on host 1 from the flow state host 0 pushed. Load: wrk in the client, THREADS threads, CONNS
# connections, WINDOWS windows of DUR s, twice per target: `cps` (Connection:
# close, every request a new connection) and `rps` (keep-alive). Targets: the
# VIP, and member 1's own address (routed, no load balancer): the VIP's cost
# is the ratio of the two. The direct load comes from a second client address
# (203.0.113.3, the preferred source of the client's route to the members;
# wrk has no source-address option): a client that reaches a member both through
# the VIP and directly from the same source port, while the first
# connection's binding lives, has its direct replies taken for the VIP's (the
# kernel drops such a SYN as a conntrack clash); the bench measures the path,
# not that case.
#
# Peer: the kernel's IPVS when this kernel has it (ip_vs; ipvsadm), else its
# nftables DNAT load balancing (`numgen random` over the members, conntrack:
# what kube-proxy's iptables mode does), on namespaces of the same shape:
# client ── gateway ns (the router: IPVS/nft, ip_forward) ── bridge+VXLAN ──
# the members in three VM namespaces on a second host namespace. Same load,
# same windows.
#
# Env: DATAPATHS="ebpf userspace" WINDOWS=3 DUR=10 CONNS=64 THREADS=2 KEEP=0 UNDERLAY_LINK=pair
#      PROFILE=release BUILD=1 RUN_DIR=/tmp/midonet-lb
# Output: `[<setup> <mode> <target>] window N: rate=...` lines and
# $RUN_DIR/results/summary.md (medians and ratios).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATAPATHS=${DATAPATHS:-ebpf userspace}
WINDOWS=${WINDOWS:-3}
DUR=${DUR:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PROFILE=${PROFILE:-release}
BUILD=${BUILD:-1}
RUN_DIR=${RUN_DIR:-/tmp/midonet-lb}
BIN=$ROOT/target/$PROFILE
SB_DIR=$RUN_DIR/sandbox
RES=$RUN_DIR/results
P=mlb                       # prefix of everything this script creates
OUT_NS=${P}out
API=127.0.0.1:18291
VIP=198.51.100.10
# The hosts' underlay: `pair` (one veth between the two host namespaces) is how the
# peers wire theirs; `bridge` (the sandbox's default, an underlay namespace with a
# bridge) costs every tunnelled packet a bridge and a veth more (figures before
# 2026-12-04 were taken that way).
UNDERLAY_LINK=${UNDERLAY_LINK:-pair}
SB_ARGS=(--hosts 2 --vms-per-host 3 --prefix $P --state-dir "$SB_DIR" --api $API
         --grpc-port 18292 --underlay 198.18.68.0/24 --underlay-link "$UNDERLAY_LINK")
KNS="${P}kc ${P}kg ${P}kh ${P}kv1 ${P}kv2 ${P}kv3"   # kernel peer namespaces

log() { echo "[$(date +%T)] $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
sb() { jq -r "$1" "$SB_DIR/sandbox.json"; }
api() {  # METHOD PATH [BODY] -> response body; fails on HTTP >= 400
    curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "http://$API/midonet-api/$2"
}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for t in wrk nginx jq curl nft; do command -v $t >/dev/null || { echo "needs $t (apt-get install wrk nginx-light jq curl nftables)" >&2; exit 1; }; done

nginx_in() {  # NS NAME: nginx on :8080 answering with NAME
    mkdir -p "$RUN_DIR/ngx-$1"
    cat >"$RUN_DIR/ngx-$1/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $RUN_DIR/ngx-$1/pid; error_log /dev/null;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 8080 reuseport backlog=4096; location / { return 200 "$2\n"; } } }
NGX
    ip netns exec "$1" nginx -c "$RUN_DIR/ngx-$1/nginx.conf" >/dev/null 2>&1 &
    echo $! >>"$RUN_DIR/nginx.pids"
}

nginx_down() {
    [ -f "$RUN_DIR/nginx.pids" ] && while read -r p; do kill "$p" 2>/dev/null; done <"$RUN_DIR/nginx.pids"
    rm -f "$RUN_DIR/nginx.pids"
}

down() {
    nginx_down
    ip netns del $OUT_NS 2>/dev/null
    [ -x "$BIN/midonet" ] && "$BIN/midonet" sandbox down --state-dir "$SB_DIR" --prefix $P >/dev/null 2>&1
    local ns; for ns in $KNS; do ip netns del "$ns" 2>/dev/null; done
}
trap 'log interrupted; down; exit 130' INT TERM

# One window of load from NS to URL: requests per second.
window() {  # NS MODE URL
    local hdr=()
    [ "$2" = cps ] && hdr=(-H 'Connection: close')
    nsx "$1" wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" "${hdr[@]}" "$3" 2>/dev/null |
        awk '/Requests\/sec/ {printf "%d", $2}'
}

# Windows for every (mode, target), interleaved so the machine's noise moves
# all of them alike.
measure() {  # SETUP CLIENT_NS VIP_URL DIRECT_URL
    local w mode
    for w in $(seq "$WINDOWS"); do
        for mode in cps rps; do
            for tgt in vip direct; do
                local url=$3; [ $tgt = direct ] && url=$4
                echo "[$1 $mode $tgt] window $w: rate=$(window "$2" $mode "$url") (load $(loadavg))" |
                    tee -a "$RES/windows.txt"
                sleep 1
            done
        done
    done
}

uplink() {
    local h0 h0id router rp
    h0=$(sb '.hosts[0].ns'); h0id=$(sb '.hosts[0].id'); router=$(sb '.router_id')
    ip netns add $OUT_NS && ip -n $OUT_NS link set lo up
    ip link add ${P}up netns "$h0" type veth peer name ${P}op netns $OUT_NS
    ip -n "$h0" link set ${P}up up
    ip -n $OUT_NS addr add 203.0.113.1/24 dev ${P}op
    ip -n $OUT_NS addr add 203.0.113.3/24 dev ${P}op
    ip -n $OUT_NS link set ${P}op up
    ip -n $OUT_NS route add 10.0.0.0/8 via 203.0.113.2 src 203.0.113.3
    ip -n $OUT_NS route add $VIP/32 via 203.0.113.2
    nsx $OUT_NS sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
    rp=$(api POST "routers/$router/ports" \
        '{"type":"Router","portAddress":"203.0.113.2","networkAddress":"203.0.113.0","networkLength":24}' | jq -r .id) ||
        return 1
    api POST "routers/$router/routes" "{\"srcNetworkAddr\":\"0.0.0.0\",\"srcNetworkLength\":0,\"dstNetworkAddr\":\"203.0.113.0\",\"dstNetworkLength\":24,\"nextHopPort\":\"$rp\"}" >/dev/null || return 1
    api POST "hosts/$h0id/ports" "{\"portId\":\"$rp\",\"interfaceName\":\"${P}up\"}" >/dev/null
}

# The sandbox router's load balancer: VIP over the three VMs of host 1.
balancer() {
    local router lb pool ip
    router=$(sb '.router_id')
    lb=$(api POST load_balancers "{\"routerId\":\"$router\"}" | jq -r .id) || return 1
    api GET "routers/$router" | jq --arg l "$lb" '.loadBalancerId = $l' |
        curl -sf -X PUT -H 'Content-Type: application/json' -d @- "http://$API/midonet-api/routers/$router" >/dev/null || return 1
    pool=$(api POST pools "{\"loadBalancerId\":\"$lb\"}" | jq -r .id) || return 1
    for ip in $MEMBERS; do
        api POST pool_members "{\"poolId\":\"$pool\",\"address\":\"$ip\",\"protocolPort\":8080}" >/dev/null || return 1
    done
    api POST vips "{\"loadBalancerId\":\"$lb\",\"poolId\":\"$pool\",\"address\":\"$VIP\",\"protocolPort\":8080}" >/dev/null
}

run_midonet_on() {  # PROVIDER
    local dp=$1 ok=0 ns
    log "midonet-rs ($dp): sandbox up"
    if ! "$BIN/midonet" sandbox up "${SB_ARGS[@]}" --datapath "$dp" >"$RES/sandbox-up-$dp.txt" 2>&1; then
        log "sandbox up failed:"; tail -20 "$RES/sandbox-up-$dp.txt" >&2; down; return
    fi
    # Members: the VMs of host 1 (the client enters on host 0).
    local vms
    vms=$(sb '.vms[] | select(.host == 1) | "\(.ns) \(.ip)"' | head -3)
    MEMBERS=$(echo "$vms" | awk '{print $2}' | tr '\n' ' ')
    local first; first=$(echo "$MEMBERS" | awk '{print $1}')
    uplink || { log "uplink setup failed"; down; return; }
    balancer || { log "load balancer setup failed"; down; return; }
    while read -r ns ip; do nginx_in "$ns" "$ip"; done <<<"$vms"
    sleep 0.5
    for _ in $(seq 50); do nsx $OUT_NS curl -s --max-time 1 "http://$VIP:8080/" >/dev/null && { ok=1; break; }; sleep 0.3; done
    [ $ok = 1 ] || { log "the VIP does not answer"; down; return; }
    # Spread check: 30 requests, each a new connection.
    for _ in $(seq 30); do nsx $OUT_NS curl -s --max-time 2 "http://$VIP:8080/"; done | sort | uniq -c |
        sed "s/^/[midonet-$dp] spread: /" | tee -a "$RES/spread.txt"
    measure "midonet-$dp" $OUT_NS "http://$VIP:8080/" "http://$first:8080/"
    for h in 0 1; do nsx "$(sb ".hosts[$h].ns")" curl -s http://127.0.0.1:7300/metrics >"$RES/metrics-$dp-h$h.txt" 2>/dev/null; done
    if [ "${KEEP:-0}" = 1 ]; then log "KEEP=1: left running; \`$0 down\` removes it"; else down; fi
}

# The kernel peer: client ns kc ── veth ── gateway kg (VIP: IPVS or nft DNAT;
# ip_forward) with bridge + VXLAN ══ underlay ══ host kh: bridge + VXLAN,
# members kv1..kv3 (10.0.1.11-13) on it.
run_kernel() {
    local ns i how
    down
    for ns in $KNS; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    ip link add ${P}ku1 netns ${P}kg type veth peer name ${P}ku2 netns ${P}kh
    ip -n ${P}kg addr add 198.18.69.1/24 dev ${P}ku1; ip -n ${P}kg link set ${P}ku1 up
    ip -n ${P}kh addr add 198.18.69.2/24 dev ${P}ku2; ip -n ${P}kh link set ${P}ku2 up
    for ns in ${P}kg ${P}kh; do
        local local_ip=198.18.69.1 remote=198.18.69.2
        [ "$ns" = ${P}kh ] && { local_ip=198.18.69.2; remote=198.18.69.1; }
        ip -n "$ns" link add ${P}kbr type bridge
        ip -n "$ns" link add ${P}kvx type vxlan id 42 local $local_ip remote $remote dstport 4789 nolearning
        ip -n "$ns" link set ${P}kvx master ${P}kbr; ip -n "$ns" link set ${P}kvx up; ip -n "$ns" link set ${P}kbr up
    done
    ip -n ${P}kg addr add 10.0.1.1/24 dev ${P}kbr
    ip -n ${P}kg link set ${P}kbr mtu 1450
    for i in 1 2 3; do
        ip link add ${P}kv$i netns ${P}kv$i type veth peer name ${P}kp$i netns ${P}kh
        ip -n ${P}kh link set ${P}kp$i master ${P}kbr; ip -n ${P}kh link set ${P}kp$i up
        ip -n ${P}kv$i addr add 10.0.1.1$i/24 dev ${P}kv$i; ip -n ${P}kv$i link set ${P}kv$i mtu 1450 up
        ip -n ${P}kv$i route add default via 10.0.1.1
        nginx_in ${P}kv$i 10.0.1.1$i
    done
    ip link add ${P}kc netns ${P}kc type veth peer name ${P}kcg netns ${P}kg
    ip -n ${P}kc addr add 203.0.113.1/24 dev ${P}kc; ip -n ${P}kc link set ${P}kc up
    ip -n ${P}kc addr add 203.0.113.3/24 dev ${P}kc
    ip -n ${P}kc route add default via 203.0.113.2
    ip -n ${P}kc route add 10.0.1.0/24 via 203.0.113.2 src 203.0.113.3
    ip -n ${P}kg addr add 203.0.113.2/24 dev ${P}kcg; ip -n ${P}kg link set ${P}kcg up
    nsx ${P}kg sysctl -qw net.ipv4.ip_forward=1
    nsx ${P}kc sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
    modprobe ip_vs 2>/dev/null
    if [ -e /proc/net/ip_vs ] && command -v ipvsadm >/dev/null; then
        how=ipvs
        nsx ${P}kg ipvsadm -A -t $VIP:8080 -s rr
        for i in 1 2 3; do nsx ${P}kg ipvsadm -a -t $VIP:8080 -r 10.0.1.1$i:8080 -m; done
        ip -n ${P}kg addr add $VIP/32 dev lo
    else
        how=nft
        log "this kernel has no IPVS (ip_vs): the peer is nftables DNAT load balancing"
        nsx ${P}kg nft -f - <<NFT
table ip mlb {
  chain pre { type nat hook prerouting priority dstnat;
    ip daddr $VIP tcp dport 8080 dnat to numgen random mod 3 map { 0 : 10.0.1.11, 1 : 10.0.1.12, 2 : 10.0.1.13 } : 8080
  }
}
NFT
    fi
    sleep 0.5
    nsx ${P}kc curl -s --max-time 2 "http://$VIP:8080/" >/dev/null || { log "kernel peer: VIP does not answer"; down; return; }
    measure "kernel-$how" ${P}kc "http://$VIP:8080/" "http://10.0.1.11:8080/"
    down
}

summary() {
    {
        echo "| setup | load | VIP (3 members) per window | one member direct per window | VIP median | direct median | VIP / direct |"
        echo "| --- | --- | --- | --- | --- | --- | --- |"
        awk '{ s = $1; sub(/^\[/, "", s); m = $2; t = $3; sub(/\]$/, "", t)
               for (i = 1; i <= NF; i++) if ($i ~ /^rate=/) v = substr($i, 6)
               k = s " " m; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
               if (t == "vip") vip[k] = vip[k] " " v; else dir[k] = dir[k] " " v }
             function med(str,   a, c, i, j, x) { c = split(str, a, " ")
               for (i = 2; i <= c; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
               return c ? a[int((c + 1) / 2)] : 0 }
             END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, " "); mv = med(vip[k]); md = med(dir[k])
                   printf "| %s | %s |%s |%s | %d | %d | %.2f |\n", p[1], p[2], vip[k], dir[k], mv, md, (md ? mv / md : 0) } }' \
            "$RES/windows.txt"
        [ -s "$RES/spread.txt" ] && { echo; echo '30 new connections to the VIP, answers per member:'; sed 's/^/    /' "$RES/spread.txt"; }
    } >"$RES/summary.md"
    cat "$RES/summary.md"
}

mkdir -p "$RES"; : >"$RES/windows.txt"; : >"$RES/spread.txt"
what=${*:-midonet kernel}
[ "$what" = down ] && { down; exit 0; }
if [[ " $what " == *" midonet "* ]]; then
    if [ "$BUILD" = 1 ]; then
        flag=; [ "$PROFILE" = release ] && flag=--release
        (cd "$ROOT" && cargo build $flag --locked -p midonet-bin -p midonet-cluster-bin -p midonet-agent-bin) >&2 ||
            { log "build failed"; exit 1; }
    fi
    for dp in $DATAPATHS; do run_midonet_on "$dp"; done
fi
[[ " $what " == *" kernel "* ]] && run_kernel
summary
