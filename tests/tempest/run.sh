#!/usr/bin/env bash
# Runs OpenStack tempest's Neutron API tests (tempest.api.network, tempest
# 47.0.0, pinned) against a running cluster, logging in at its
# Keystone-compatible identity endpoint, with pre-provisioned accounts or
# (TEMPEST_CREDENTIALS=dynamic) with tempest's default dynamic
# credentials: a project and users made per test class over the identity
# admin API, deleted afterwards.
#
#   tests/tempest/run.sh AUTH_URL PUBLIC_NETWORK_ID
#
#   AUTH_URL           the identity endpoint, e.g. http://127.0.0.1:8181/neutron/identity/v3
#   PUBLIC_NETWORK_ID  an external network with an IPv4 subnet (floating IPs, gateways)
#
# With pre-provisioned accounts the cluster must have these users
# (password: the name followed by "pw"): demo and demor (reader) in project
# demo, alt and altr (reader) in project alt, admin and admin2 (admins).
# Dynamic credentials need only admin/adminpw in project admin. Exits
# non-zero if any test fails; tests for extensions the server does not list
# are skipped by tempest itself.
#
# Environment:
#   TEMPEST_VENV  venv directory (default /tmp/midonet-rs-tempest-venv);
#                 created on first use (needs PyPI), reused afterwards.
#   TEMPEST_REGEX tests to run (default ^tempest\.api\.network)
#   TEMPEST_CREDENTIALS  accounts (default) or dynamic
#   TEMPEST_CONCURRENCY  test workers (default 1)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
auth_url="${1:?usage: run.sh AUTH_URL PUBLIC_NETWORK_ID}"
public_net="${2:?usage: run.sh AUTH_URL PUBLIC_NETWORK_ID}"
venv="${TEMPEST_VENV:-/tmp/midonet-rs-tempest-venv}"
regex="${TEMPEST_REGEX:-^tempest\.api\.network}"
credentials="${TEMPEST_CREDENTIALS:-accounts}"
concurrency="${TEMPEST_CONCURRENCY:-1}"
case "$credentials" in
  accounts | dynamic) ;;
  *) echo "run.sh: TEMPEST_CREDENTIALS must be accounts or dynamic, not $credentials" >&2; exit 2 ;;
esac

marker="$venv/.midonet-rs-tempest-v1"
if [ ! -f "$marker" ]; then
  py="$(command -v python3.11 || command -v python3)"
  echo "run.sh: creating venv $venv with $py" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check tempest==47.0.0
  touch "$marker"
fi

ws="$(mktemp -d /tmp/midonet-rs-tempest-ws.XXXXXX)"
trap 'rm -rf "$ws"' EXIT
"$venv/bin/tempest" init "$ws" >/dev/null
accounts="$ws/etc/accounts.yaml"
: >"$accounts"
for a in demo:demo:member alt:alt:member demor:demo:reader altr:alt:reader admin:admin:admin admin2:admin:admin; do
  IFS=: read -r user project role <<<"$a"
  {
    echo "- username: $user"
    echo "  project_name: $project"
    echo "  password: ${user}pw"
    echo "  domain_name: Default"
    case "$role" in
      admin) printf '  types:\n    - admin\n' ;;
      member) printf '  roles:\n    - member\n    - reader\n' ;;
      reader) printf '  roles:\n    - reader\n' ;;
    esac
  } >>"$accounts"
done

# The extensions tempest may use: exactly those the server lists.
extensions="$(curl -sf "${auth_url%/identity/v3}/v2.0/extensions" -H "X-Auth-Token: $(
  curl -sf -i -X POST "$auth_url/auth/tokens" -H 'Content-Type: application/json' \
    -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"adminpw"}}},"scope":{"project":{"name":"admin","domain":{"name":"Default"}}}}}' |
    tr -d '\r' | awk 'tolower($1) == "x-subject-token:" {print $2}'
)" | python3 -c 'import json, sys; print(",".join(e["alias"] for e in json.load(sys.stdin)["extensions"]))')"
[ -n "$extensions" ] || { echo "run.sh: could not read the server's extensions" >&2; exit 1; }

if [ "$credentials" = dynamic ]; then
  auth_section="use_dynamic_credentials = True
admin_username = admin
admin_password = adminpw
admin_project_name = admin
admin_domain_name = Default"
else
  auth_section="use_dynamic_credentials = False
test_accounts_file = $accounts"
fi

cat >"$ws/etc/tempest.conf" <<CONF
[DEFAULT]
log_file = tempest.log
[auth]
$auth_section
create_isolated_networks = False
default_credentials_domain_name = Default
[identity]
uri_v3 = $auth_url
auth_version = v3
admin_role = admin
[identity-feature-enabled]
api_v2 = False
[service_available]
neutron = True
nova = False
glance = False
cinder = False
swift = False
[network]
public_network_id = $public_net
project_network_cidr = 10.100.0.0/16
project_network_mask_bits = 28
[network-feature-enabled]
api_extensions = $extensions
ipv6 = True
ipv6_subnet_attributes = False
CONF

cd "$ws"
status=0
"$venv/bin/tempest" run --regex "$regex" --exclude-list "$here/exclude.txt" --concurrency "$concurrency" >"$ws/out.txt" 2>&1 || status=$?
grep -E '\.\.\. (FAILED|ok|SKIPPED)' "$ws/out.txt" | sed -E 's/^\{[0-9]+\} //; s/ \[[0-9.]+s\]//' || true
sed -n '/^Totals/,/^Sum of/p' "$ws/out.txt"
if [ "$status" -ne 0 ]; then
  sed -n '/^Failed [0-9]* tests/,$p' "$ws/out.txt" | head -400
  echo "run.sh: tempest failed (exit $status)" >&2
fi
exit "$status"
