#!/usr/bin/env bash
# bench/restart.sh -- what an agent restart costs established traffic (issue 11):
# `kill -9` of both hosts' agents in the middle of a ping every 10 ms (one bridge and
# through the router) and a TCP stream, AGENTS_DOWN s with no agent at all, then both
# restarted with their own command lines. With the ebpf datapath the kernel keeps
# forwarding on its pinned flows and the new agents adopt them.
#
#   sudo bench/restart.sh                 DATAPATH=ebpf, one kill/restart in a 12 s window
#
# midonet-rs: `midonet sandbox up --hosts 2 --vms-per-host 2 --underlay-link pair`
# (prefix mnr), static neighbours; VM 0 -> VM 1 (l2) and VM 0 -> VM 3 (l3):
# ping -i 0.01 for DUR s to each, iperf3 TCP one stream DUR s (1 s intervals) to VM 1.
# Reported: pings sent and answered, the longest run of unanswered pings, TCP Gbit/s
# per second (a 0 is a stall), retransmits.
#
# Env: DATAPATH=ebpf DUR=12 KILL_AT=4 AGENTS_DOWN=2 PROFILE=release RUN_DIR=/tmp/midonet-restart
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATAPATH=${DATAPATH:-ebpf}
DUR=${DUR:-12}
KILL_AT=${KILL_AT:-4}
AGENTS_DOWN=${AGENTS_DOWN:-2}
BIN=$ROOT/target/${PROFILE:-release}
RUN_DIR=${RUN_DIR:-/tmp/midonet-restart}
SB=$RUN_DIR/sandbox
[ "$(id -u)" = 0 ] || { echo "bench/restart.sh needs root" >&2; exit 1; }
for t in iperf3 jq ping; do command -v $t >/dev/null || { echo "bench/restart.sh: $t is missing" >&2; exit 1; }; done
PIDS=()
teardown() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "$RUN_DIR"/*.pid; do [ -e "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
    "$BIN/midonet" sandbox down --state-dir "$SB" --prefix mnr >/dev/null 2>&1
}
trap 'teardown; exit 130' INT TERM
rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"
. "$ROOT/bench/sandbox4.sh"
sandbox4_up mnr 18580 198.18.79.0/24 "$DATAPATH"
src=$(vmf 0 ns); l2=$(vmf 1 ip); l3=$(vmf 3 ip)
nsx "$src" ping -c 3 -W 1 "$l2" >/dev/null; nsx "$src" ping -c 3 -W 1 "$l3" >/dev/null
nsx "$(vmf 1 ns)" iperf3 -s -1 -B "$l2" -D --pidfile "$RUN_DIR/iperf3.pid"
sleep 0.5
n=$((DUR * 100))
nsx "$src" ping -D -n -i 0.01 -W 1 -c "$n" "$l2" >"$RUN_DIR/ping-l2.txt" 2>&1 & PIDS+=($!)
nsx "$src" ping -D -n -i 0.01 -W 1 -c "$n" "$l3" >"$RUN_DIR/ping-l3.txt" 2>&1 & PIDS+=($!)
nsx "$src" iperf3 -c "$l2" -t "$DUR" -i 1 -J >"$RUN_DIR/tcp.json" 2>&1 & PIDS+=($!)
sleep "$KILL_AT"
declare -A CMD NS
for h in 0 1; do
    pid=$(pgrep -f "$SB/h$h/agent.toml" | head -1)
    [ -n "$pid" ] || { echo "no agent for host $h" >&2; teardown; exit 1; }
    CMD[$h]=$(tr '\0' '\n' <"/proc/$pid/cmdline" | sed 's/.*/"&"/' | tr '\n' ' ')
    NS[$h]=$(ip netns identify "$pid")
    kill -9 "$pid"
done
echo "[$(date +%T)] killed both agents (kill -9); $AGENTS_DOWN s with none"
sleep "$AGENTS_DOWN"
for h in 0 1; do
    eval "ip netns exec ${NS[$h]} ${CMD[$h]}" >>"$SB/h$h/agent-restarted.log" 2>&1 &
    echo $! >"$RUN_DIR/agent-$h.pid"
done
echo "[$(date +%T)] restarted both"
wait "${PIDS[@]}" 2>/dev/null
PIDS=()
{
    echo "agent restart under load: $DATAPATH, $(date -u +'%Y-%m-%d %H:%M UTC'), commit $(cd "$ROOT" && git rev-parse --short HEAD), kill -9 at ${KILL_AT} s of ${DUR} s, ${AGENTS_DOWN} s with no agent"
    for s in l2 l3; do
        f=$RUN_DIR/ping-$s.txt
        sent=$(awk '/packets transmitted/ {print $1}' "$f"); got=$(awk '/packets transmitted/ {print $4}' "$f")
        # The longest run of missing sequence numbers among the answered ones.
        gap=$(awk -F'icmp_seq=' '/icmp_seq=/ {split($2,a," "); s=a[1]; if (p && s-p-1 > g) g=s-p-1; p=s} END {print g+0}' "$f")
        echo "ping $s: $got of $sent answered, longest run of lost pings $gap"
    done
    echo "tcp: $(jq -r '[.intervals[].sum.bits_per_second / 1e9 | . * 100 | round / 100] | map(tostring) | join(" ")' "$RUN_DIR/tcp.json") Gbit/s per second; retransmits $(jq -r '.end.sum_sent.retransmits' "$RUN_DIR/tcp.json")"
    for h in 0 1; do
        echo "host $h agent after restart: $(grep -o 'adopted the kernel state[^"]*' "$SB/h$h/agent-restarted.log" | head -1 | cut -c1-80) $(grep -o '"flows":[0-9]*' "$SB/h$h/agent-restarted.log" | head -1)"
    done
} | tee "$RUN_DIR/report.txt"
mkdir -p "$ROOT/bench/results"
cp "$RUN_DIR/report.txt" "$ROOT/bench/results/restart-$DATAPATH-$(date -u +%Y%m%d-%H%M).txt"
for h in 0 1; do ip netns exec "${NS[$h]}" curl -s "http://127.0.0.1:7300/metrics" >"$RUN_DIR/metrics-h$h.txt" 2>/dev/null; done
for h in 0 1; do kill "$(cat "$RUN_DIR/agent-$h.pid")" 2>/dev/null; rm -f "$RUN_DIR/agent-$h.pid"; done
teardown
