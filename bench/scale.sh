#!/usr/bin/env bash
# The control plane at size (issue 12, item 6): builds the scale harness
# (crates/cluster/examples/scale.rs) and the daemons in release, runs it and
# writes what it prints to bench/results/scale-<date>.txt.
#
#   bench/scale.sh                 # full size: 1000 agents, 1000 routers, 10k bridges, 100k ports (~15 min)
#   bench/scale.sh --quick         # smoke run: 100 agents, 10k ports (~2 min)
#   bench/scale.sh --help          # every flag
#   BUILD=0 bench/scale.sh ...     # use target/release as it is
#
# Needs etcd (apt package etcd-server). No root needed. Other load on the
# machine moves every figure: run it on a quiet machine (`uptime`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BUILD:-1}" = 1 ]; then
  # Two invocations: `--example` would restrict the bins' build to examples.
  cargo build --release -p midonet-cluster-bin -p midonet-agent-bin
  cargo build --release -p midonet-cluster --example scale
fi
# One TCP connection per simulated agent on each side, plus the cluster's.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt 8192 ]; then
  echo "bench/scale.sh: ulimit -n is $(ulimit -n); 1000 agents need about 3000 descriptors" >&2
fi
mkdir -p bench/results
out="bench/results/scale-$(date +%Y%m%d-%H%M%S).txt"
{
  echo "# bench/scale.sh $*"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?') on $(hostname); $(nproc) cores; uptime:$(uptime | sed 's/.*load/ load/')"
} >"$out"
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
  rm -f "$out"
  exec target/release/examples/scale --help
fi
target/release/examples/scale "$@" 2>&1 | tee -a "$out"
echo "written: $out" >&2
