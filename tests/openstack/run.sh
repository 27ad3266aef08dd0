#!/usr/bin/env bash
# Runs the real OpenStack client (python-openstackclient, pinned as in
# shared/reference/clients.md §B1) against a running cluster's Neutron API,
# asserting every result (probe.py).
#
#   tests/openstack/run.sh ENDPOINT [AUTH_URL USER PASSWORD PROJECT]
#
#   ENDPOINT  the Neutron endpoint, e.g. http://127.0.0.1:9696 or
#             http://127.0.0.1:8181/neutron (used with `--os-auth-type none`)
#   AUTH_URL... Keystone password auth instead (the catalog gives the
#             endpoint), e.g. http://127.0.0.1:8181/neutron/identity/v3
#
# Environment:
#   OSC_VENV  venv directory (default /tmp/midonet-rs-osc-venv); created on
#             first use (needs PyPI), reused afterwards; tests running at
#             once wait for one another to create it.
#   OSC_SCRIPT  the script to run with the venv's `openstack` (default
#             probe.py; cloud.py builds the data-plane tests' cloud).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
endpoint="${1:?usage: run.sh ENDPOINT [AUTH_URL USER PASSWORD PROJECT]}"
venv="${OSC_VENV:-/tmp/midonet-rs-osc-venv}"
pins=(python-openstackclient==10.5.0 openstacksdk==4.22.0 keystoneauth1==5.18.1 python-neutronclient==14.0.0)

marker="$venv/.midonet-rs-osc-v1"
exec 9>"$venv.lock"
flock 9
if [ ! -f "$marker" ]; then
  py="$(command -v python3.11 || command -v python3)"
  echo "run.sh: creating venv $venv with $py" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  "$venv/bin/openstack" --version >/dev/null
  touch "$marker"
fi
flock -u 9
exec 9>&-

shift
script="${OSC_SCRIPT:-probe.py}"
exec "$venv/bin/python" "$here/$script" --openstack "$venv/bin/openstack" --endpoint "$endpoint" "$@"
