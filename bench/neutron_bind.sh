#!/usr/bin/env bash
# Time from a Neutron port's binding (the API's answer to PUT
# binding:host_id) to traffic reaching its VM (issue 10): two hosts as
# namespaces, real agents (ebpf datapath), a VM on the other host sending a
# datagram every millisecond. Prints p50/p99/max over SAMPLES binds.
#
#   sudo bench/neutron_bind.sh            # 30 binds
#   sudo SAMPLES=100 bench/neutron_bind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SAMPLES="${SAMPLES:-30}"
cargo test -q -p midonet-agent --test neutron_bind 2>&1 | grep -E '^bind_to_traffic:|panicked|error'
