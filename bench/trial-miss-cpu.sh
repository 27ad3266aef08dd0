#!/usr/bin/env bash
# bench/trial-miss-cpu.sh LABEL -- one trial of the agent's CPU per miss under
# SNAT + conntrack, on a sandbox left by
#   sudo KEEP=1 NAT=1 CT=1 DATAPATHS=ebpf CLIENTS=wide WINDOWS=0 FP_N=0 BUILD=0 bench/cps.sh midonet
# (then the wide client settings in the VM: ip netns exec mnc-vm1 sysctl -w
# net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1).
# A rule added to and removed from the router's inbound chain invalidates every
# flow, so each connection of the next 10 s of wrk (Connection: close) starts
# with a miss on the VM's host until its 5-tuple's flow is back; prints the
# rate, the misses, and each host agent's CPU (utime + stime of the process)
# per miss and in all. Run it several times per build, alternating builds.
set -u
API=127.0.0.1:18191
api() { curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "http://$API/midonet-api/$2"; }
m() { ip netns exec "$1" curl -s http://127.0.0.1:7300/metrics | awk -v k="$2" '$1==k {print $2}'; }
pid() { local p; for p in $(ip netns pids "$1"); do [ "$(cat /proc/$p/comm)" = midonet-agent ] && echo "$p"; done; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
p1=$(pid mnc-h1); p0=$(pid mnc-h0); tck=$(getconf CLK_TCK)
chain=$(api GET chains | jq -r '.[] | select(.name=="cps-nat-in") | .id')
rid=$(api POST "chains/$chain/rules" '{"type":"accept","nwProto":17,"tpDst":{"start":9,"end":9},"position":1}' | jq -r .id)
sleep 1; api DELETE "rules/$rid" >/dev/null; sleep 2
a=$(m mnc-h1 midonet_agent_misses_total); c1=$(cpu "$p1"); c0=$(cpu "$p0")
r=$(ip netns exec mnc-vm1 wrk -t2 -c64 -d10s -H 'Connection: close' http://203.0.113.1:8080/ 2>/dev/null | awk '/Requests\/sec/ {printf "%d", $2}')
b=$(m mnc-h1 midonet_agent_misses_total); d1=$(cpu "$p1"); d0=$(cpu "$p0")
n=$((b - a)); [ "$n" -gt 0 ] || n=1
secs() { awk -v t="$1" -v k="$tck" 'BEGIN { printf "%.2f", t / k }'; }
echo "${1:-trial} cps=$r vm-host misses=$n agent_cpu_per_miss_us=$(( (d1 - c1) * 1000000 / tck / n ))" \
     "vm-agent_cpu_s=$(secs $((d1 - c1))) gw-agent_cpu_s=$(secs $((d0 - c0)))"
