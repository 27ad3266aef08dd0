#!/usr/bin/env bash
# The project's test command (README "Test it"): installs what the tests
# need on a fresh Debian 12 machine, builds, and runs every test:
#   unit + contract tests (store on embedded AND a real etcd), HTTP API
#   tests, CLI round trips, the real midonetclient 5.2.0 run, simulation
#   scenarios with golden traces, and system tests on real kernels
#   (network namespaces; needs root), on both datapath providers (ebpf, the
#   default where it loads, and userspace), BPF programs through this kernel's
#   verifier.
#
# Environment:
#   MIDONET_SKIP_ETCD=1    skip tests that need etcd (they fail otherwise)
#   MIDONET_SKIP_NETNS=1   skip system tests that need root + namespaces
#   MIDONET_SKIP_PY=1      skip the midonetclient (Python) run
#   MIDONET_NO_INSTALL=1   do not apt-get/pip anything
#   MIDONET_TEST_JOBS=N    tests run N at a time (default 2)
#
# A test that cannot run (not root, a program missing) FAILS with a message
# naming what is missing, unless its skip variable is set; a test skipped on
# purpose is recorded, and the end of the run lists every skip (in CI, as
# root, on a machine this script has provisioned, nothing is skipped).
# Also checked: `cargo fmt --check` and clippy with `-D warnings`.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n== %s ==\n' "$*"; }

if [ "${MIDONET_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
  pkgs=(protobuf-compiler libprotobuf-dev etcd-server etcd-client iperf3 iproute2
        iputils-ping ethtool jq tcpdump traceroute socat python3-venv python3-lib2to3 busybox
        clang llvm libbpf-dev nftables)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# Preflight: say up front, in one message, everything that is missing for the
# tests that are not skipped on purpose, instead of failing them one by one.
skip() { [ "${!1:-0}" = 1 ]; }
missing=()
command -v protoc >/dev/null || missing+=("protoc (apt package protobuf-compiler): the build needs it")
if ! skip MIDONET_SKIP_NETNS; then
  [ "$(id -u)" = 0 ] || missing+=("root: the system tests build network namespaces (run with sudo, or set MIDONET_SKIP_NETNS=1)")
  for t in ip:iproute2 ping:iputils-ping iperf3:iperf3 busybox:busybox ethtool:ethtool nft:nftables; do
    command -v "${t%%:*}" >/dev/null || missing+=("${t%%:*} (apt package ${t#*:}) for the system tests, or set MIDONET_SKIP_NETNS=1")
  done
fi
if ! skip MIDONET_SKIP_NETNS; then
  # The ebpf datapath's programs are compiled at build time and its tests
  # load them into this kernel; without clang the build makes an empty
  # object and those tests fail.
  command -v clang >/dev/null || missing+=("clang (apt packages clang llvm libbpf-dev) for the ebpf datapath, or set MIDONET_SKIP_NETNS=1")
  [ -e /usr/include/bpf/bpf_helpers.h ] || missing+=("the libbpf headers (apt package libbpf-dev) for the ebpf datapath, or set MIDONET_SKIP_NETNS=1")
fi
if ! skip MIDONET_SKIP_ETCD; then
  command -v etcd >/dev/null || missing+=("etcd (apt package etcd-server) for the etcd store tests, or set MIDONET_SKIP_ETCD=1")
fi
if ! skip MIDONET_SKIP_PY; then
  python3 -c 'import venv, lib2to3' 2>/dev/null ||
    missing+=("python3 with venv and lib2to3 (apt packages python3-venv python3-lib2to3) for the midonetclient run, or set MIDONET_SKIP_PY=1")
fi
cargo fmt --version >/dev/null 2>&1 || missing+=("rustfmt (rustup component add rustfmt)")
cargo clippy --version >/dev/null 2>&1 || missing+=("clippy (rustup component add clippy)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: cannot run every test; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

export RUST_BACKTRACE=1
# A CI checkout is built once from clean: incremental compilation only costs
# disk there, and it is the mode in which rustc has left link errors
# (undefined symbols between codegen units) in this workspace's history.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Tests start etcd servers, clusters and agents; two at a time fits 2 cores.
jobs="${MIDONET_TEST_JOBS:-2}"

log "format"
cargo fmt --all --check
(cd fuzz && cargo fmt --check)

log "build"
if ! cargo build --workspace --all-targets; then
  # A second try re-runs only what failed: a compile error fails again at
  # once, while a link killed by the machine (memory, disk) gets its chance.
  # What the machine had is printed for the record either way.
  log "build failed; machine state, then one more try"
  df -h . /tmp || true
  free -m || true
  cargo build --workspace --all-targets -j 1
fi
# The system tests run the daemons as processes. This build made them, so
# they use these binaries instead of each running `cargo build -p <bin>`,
# whose feature set is not the workspace's (midonet_testkit::bins).
export MIDONET_PREBUILT=1

log "lint"
cargo clippy --workspace --all-targets -- -D warnings

log "test"
# Tests that skip on purpose append "<test>\t<variable>" here.
MIDONET_SKIP_REPORT=$(mktemp /tmp/midonet-skips.XXXXXX)
export MIDONET_SKIP_REPORT
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast -j "$jobs" || status=$?
else
  cargo test --workspace --no-fail-fast -- --test-threads "$jobs" || status=$?
fi

if [ -s "$MIDONET_SKIP_REPORT" ]; then
  log "skipped on purpose"
  sort "$MIDONET_SKIP_REPORT" | awk -F'\t' '{print "  " $1 " (" $2 "=1)"}'
  echo "skipped: $(wc -l <"$MIDONET_SKIP_REPORT") tests (by $(cut -f2 "$MIDONET_SKIP_REPORT" | sort -u | paste -sd, -))"
else
  echo "skipped: none"
fi
rm -f "$MIDONET_SKIP_REPORT"
exit "$status"
