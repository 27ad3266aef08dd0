#!/usr/bin/env bash
# The project's run command (README "Run it"): builds the binaries and starts
# `midonet sandbox up`: a cluster on the embedded store, N hosts as network
# namespaces with one agent each, a tunnel zone and a demo topology (a router
# joining two bridges, VMs spread across hosts), then checks connectivity.
#   ./scripts/run.sh [--hosts N] ...      arguments go to `midonet sandbox up`
#   ./scripts/run.sh down                 removes everything it created
# Needs root (namespaces, veths, raw sockets).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && [ "${MIDONET_NO_INSTALL:-0}" != 1 ]; then
  missing=()
  for p in protobuf-compiler libprotobuf-dev iproute2 iputils-ping; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi
cargo build --release -p midonet-bin -p midonet-cluster-bin -p midonet-agent-bin
bin=target/release
case "${1:-up}" in
  down|status) exec "$bin/midonet" sandbox "$@" ;;
  up) shift || true; exec "$bin/midonet" sandbox up "$@" ;;
  *) exec "$bin/midonet" sandbox up "$@" ;;
esac
