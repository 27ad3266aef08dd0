#!/usr/bin/env bash
# Runs the real MidoNet Python client (midonetclient 5.2.0 from PyPI) and
# its midonet-cli against a running cluster, asserting every result.
#
#   tests/midonetclient/run.sh URL [USER PASSWORD [PROJECT]]
#
#   URL       API base, e.g. http://127.0.0.1:8181/midonet-api
#   USER/PASSWORD/PROJECT   credentials; omit USER (or pass "-") for a
#             cluster running with --no-auth.
#
# Environment:
#   MNC_VENV   venv directory (default /tmp/midonet-rs-mnc-venv); created on
#              first use, reused afterwards (a marker file records the fixes).
#   MNC_PYTHON interpreter for the venv (default: python3.11, else python3.12;
#              lib2to3 is gone from 3.13).
#
# 5.2.0 is Python 2 code; the fixes below
# make it run on 3.11: 2to3 over the package and the CLI script, bytes/str
# in Basic auth, and decoded error bodies for webob.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
url="${1:?usage: run.sh URL [USER PASSWORD [PROJECT]]}"
user="${2:--}"
password="${3:-}"
project="${4:-admin}"
venv="${MNC_VENV:-/tmp/midonet-rs-mnc-venv}"

usable() { command -v "$1" >/dev/null 2>&1 && "$1" -c 'import lib2to3, ensurepip' 2>/dev/null; }

pick_python() {
  if [ -n "${MNC_PYTHON:-}" ]; then echo "$MNC_PYTHON"; return; fi
  for p in python3.11 python3.12; do
    if usable "$p"; then echo "$p"; return; fi
  done
  # Debian 12 ships python3.11 but splits venv support and lib2to3 into
  # their own packages; install them when we may.
  if [ "$(id -u)" = 0 ] && [ "${MIDONET_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null; then
    echo "run.sh: installing python3-venv python3-lib2to3" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv python3-lib2to3 >&2
    for p in python3.11 python3.12; do
      if usable "$p"; then echo "$p"; return; fi
    done
  fi
  echo "run.sh: need python3.11 or python3.12 with venv and lib2to3 for midonetclient 5.2.0" \
       "(Debian: apt-get install python3-venv python3-lib2to3)" >&2
  exit 2
}

marker="$venv/.midonet-rs-fixed-v1"
if [ ! -f "$marker" ]; then
  py="$(pick_python)"
  echo "run.sh: creating venv $venv with $py" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check midonetclient==5.2.0
  sp="$("$venv/bin/python" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')"
  # 1) py2 -> py3 (package and the CLI script, which has no .py suffix).
  "$venv/bin/python" -W ignore -m lib2to3 -w -n "$sp/midonetclient" "$venv/bin/midonet-cli" >/dev/null 2>&1
  # 2) bytes/str in HTTP Basic auth.
  sed -i "s/base64.b64encode(self.username + ':' + self.password)/base64.b64encode((self.username + ':' + self.password).encode()).decode()/" \
    "$sp/midonetclient/auth_lib.py"
  # 3) decode error bodies before building webob exceptions (readable errors).
  sed -i "s/^        err = http_errors\[response\['status'\]\](content)/        content = content.decode('utf-8', 'replace') if isinstance(content, bytes) else content\n        err = http_errors[response['status']](content)/" \
    "$sp/midonetclient/api_lib.py"
  grep -q "encode()).decode()" "$sp/midonetclient/auth_lib.py" || { echo "run.sh: auth_lib fix did not apply" >&2; exit 2; }
  "$venv/bin/python" -c 'from midonetclient.api import MidonetApi' || { echo "run.sh: midonetclient does not import after the fixes" >&2; exit 2; }
  touch "$marker"
fi

exec "$venv/bin/python" "$here/probe.py" --url "$url" --user "$user" --password "$password" \
  --project "$project" --cli "$venv/bin/midonet-cli"
