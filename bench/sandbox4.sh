# bench/sandbox4.sh -- sourced by bench scripts that measure on one sandbox of two hosts
# with two VMs each, wired as the peers are (`--underlay-link pair`):
#   VM 0 (host 0) -> VM 1 (host 1): one bridge, across the tunnel ("l2")
#   VM 0 -> VM 3 (host 1, other bridge): bridge -> router -> bridge ("l3")
# Needs BIN, RUN_DIR, SB and a `teardown` function; defines vmf and nsx.
#
#   sandbox4_up PREFIX PORT_BASE UNDERLAY DATAPATH   (API on PORT_BASE+1, gRPC +2)
# brings it up (output in $RUN_DIR/up.txt) and gives every VM static neighbours for
# its peer and its gateway, so no figure includes ARP; exits through teardown on failure.

vmf() { jq -r ".vms[$1].$2" "$SB/sandbox.json"; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

sandbox4_up() {
    local prefix=$1 base=$2 underlay=$3 datapath=$4 i j b v g
    "$BIN/midonet" sandbox up --hosts 2 --vms-per-host 2 --prefix "$prefix" --state-dir "$SB" \
        --api "127.0.0.1:$((base + 1))" --grpc-port "$((base + 2))" --underlay "$underlay" \
        --datapath "$datapath" --underlay-link pair >"$RUN_DIR/up.txt" 2>&1 ||
        { tail "$RUN_DIR/up.txt" >&2; teardown; exit 1; }
    for i in 0 1; do j=$((1 - i))
        nsx "$(vmf $i ns)" ip neigh replace "$(vmf $j ip)" lladdr "$(vmf $j mac)" dev "$(vmf $i vm_if)" nud permanent
    done
    for b in 0 1; do v=$((b * 3)); g=$(jq -r ".bridges[$b].router_port_mac" "$SB/sandbox.json")
        nsx "$(vmf $v ns)" ip neigh replace "$(vmf $v gateway)" lladdr "$g" dev "$(vmf $v vm_if)" nud permanent
    done
}
