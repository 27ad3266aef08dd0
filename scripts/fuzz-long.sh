#!/usr/bin/env bash
# Long libFuzzer runs of every target, one at a time (docs/FUZZING.md).
# Usage: scripts/fuzz-long.sh [seconds per target] [targets...]
# Builds with `cargo +nightly fuzz build` (AddressSanitizer), then runs each
# binary on fuzz/corpus-work/<t> (new inputs, not committed) seeded from the
# committed fuzz/corpus/<t>, niced, one process. Prints one summary line per
# target: name, seconds, executions, exec/s, corpus size, crashes.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(vxlan extract arp icmp_error sim_packet grpc_agent rest_body dhcp flowstate neutron_api offload finmerge)
logs="${FUZZ_LOGS:-artifacts/logs}"
mkdir -p "$logs" artifacts
[ "${FUZZ_NO_BUILD:-0}" = 1 ] || cargo +nightly fuzz build
bin="${FUZZ_BIN:-target/x86_64-unknown-linux-gnu/release}"
for t in "${targets[@]}"; do
  mkdir -p "corpus-work/$t" "corpus/$t"
  start=$(date +%s)
  rc=0
  nice -n 19 "$bin/$t" "corpus-work/$t" "corpus/$t" -max_total_time="$secs" \
    -artifact_prefix="artifacts/$t-" -print_final_stats=1 >"$logs/$t.log" 2>&1 || rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
  corpus=$(find "corpus-work/$t" -type f | wc -l)
  crashes=$(find artifacts -maxdepth 1 -name "$t-*" -type f | wc -l)
  echo "$t secs=$took execs=${execs:-?} exec/s=${rate:-?} corpus=$corpus crashes=$crashes rc=$rc date=$(date -u +%F)"
done
