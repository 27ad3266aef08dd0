#!/usr/bin/env bash
# Runs a throw-away single-member etcd on 127.0.0.1 in the foreground, with
# the same settings as the tests' midonet_store::testutil::EtcdServer, and
# prints the store URL to use (etcd://127.0.0.1:PORT, e.g. for
# `midonet-cluster --store`). The data dir is a temp dir removed on exit;
# Ctrl-C (or SIGTERM) stops etcd.
#   scripts/etcd-test-server.sh [CLIENT_PORT [PEER_PORT]]   (default 23790 23800)
set -euo pipefail
client_port="${1:-23790}"
peer_port="${2:-23800}"
etcd_bin="${MIDONET_ETCD_BIN:-etcd}"
command -v "$etcd_bin" >/dev/null || {
  echo "etcd not found: apt-get install etcd-server (or set MIDONET_ETCD_BIN)" >&2
  exit 1
}
dir="$(mktemp -d -t midonet-etcd-XXXXXX)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
client="http://127.0.0.1:${client_port}"
peer="http://127.0.0.1:${peer_port}"
"$etcd_bin" --name=midonet-test --data-dir="$dir/data" \
  --listen-client-urls="$client" --advertise-client-urls="$client" \
  --listen-peer-urls="$peer" --initial-advertise-peer-urls="$peer" \
  --initial-cluster="midonet-test=$peer" --initial-cluster-state=new \
  --heartbeat-interval=50 --election-timeout=500 --max-txn-ops=10000 \
  --logger=zap >"$dir/etcd.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  if curl -fsS "$client/health" 2>/dev/null | grep -q '"health":"true"'; then
    echo "etcd ready: etcd://127.0.0.1:${client_port} (pid $pid, log $dir/etcd.log)"
    wait "$pid"
    exit $?
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$dir/etcd.log" >&2; exit 1; }
  sleep 0.1
done
echo "etcd did not become healthy; log:" >&2
tail -20 "$dir/etcd.log" >&2
exit 1
