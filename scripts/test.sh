#!/usr/bin/env bash
# The project's test command (README "Test it"): installs what the tests
# need on a fresh Debian 12 machine, builds, and runs every test:
#   unit + contract tests (store on embedded AND a real etcd), HTTP API
#   tests, CLI round trips, the real midonetclient 5.2.0 run, simulation
#   scenarios with golden traces, and system tests on real kernels
#   (network namespaces; needs root).
#
# Environment:
#   MIDONET_SKIP_ETCD=1    skip tests that need etcd (they fail otherwise)
#   MIDONET_SKIP_NETNS=1   skip system tests that need root + namespaces
#   MIDONET_SKIP_PY=1      skip the midonetclient (Python) run
#   MIDONET_NO_INSTALL=1   do not apt-get/pip anything
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== %s ==\n' "$*"; }

if [ "${MIDONET_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
  pkgs=(protobuf-compiler libprotobuf-dev etcd-server etcd-client iperf3 iproute2
        iputils-ping ethtool jq tcpdump traceroute socat python3-venv python3-lib2to3 busybox)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

for tool in protoc etcd; do
  command -v "$tool" >/dev/null || echo "warning: $tool not found; tests that need it will fail" >&2
done

export MIDONET_RUN_PY_CLIENT=1
[ "${MIDONET_SKIP_PY:-0}" = 1 ] && export MIDONET_RUN_PY_CLIENT=0
export RUST_BACKTRACE=1
# Tests start etcd servers, clusters and agents; two at a time fits 2 cores.
jobs="${MIDONET_TEST_JOBS:-2}"

log "build"
cargo build --workspace --all-targets

log "test"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast -j "$jobs"
else
  cargo test --workspace --no-fail-fast -- --test-threads "$jobs"
fi
