"""Builds the issue's demo cloud with the real `openstack` CLI only, for a
test that then plugs VMs in and sends real packets: an external network,
two tenant networks, a router between them with a gateway on the external
one, a security group allowing TCP 22 and ICMP in, three ports bound to
hosts (`--host` and `--binding-profile interface_name=...`, or Nova's
`tap` + 11 characters of the port id when no interface is given) and a
floating IP for vm2. Prints each step on stderr and, last, one JSON
object on stdout with what the test needs. Exits non-zero at the first
failure.

    cloud.py --openstack BIN --endpoint URL --host0 ID --host1 ID \
        --vm1-if NAME --out-if NAME

`--status PORT` instead prints the status `openstack port show` gives.
"""
import argparse
import json
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--openstack", required=True)
ap.add_argument("--endpoint", required=True)
ap.add_argument("--host0")
ap.add_argument("--host1")
ap.add_argument("--vm1-if")
ap.add_argument("--out-if")
ap.add_argument("--status")
args = ap.parse_args()

base = [args.openstack, "--os-auth-type", "none", "--os-endpoint", args.endpoint]


def run(*cmd, fmt=True):
    """Runs `openstack CMD`; returns its parsed JSON output (or text)."""
    full = base + list(cmd) + (["-f", "json"] if fmt else [])
    p = subprocess.run(full, capture_output=True, text=True, timeout=120)
    shown = " ".join(cmd)
    if p.returncode != 0:
        print(f"FAIL openstack {shown}: rc={p.returncode}\n{p.stdout}\n{p.stderr}", file=sys.stderr)
        sys.exit(1)
    print(f"ok   openstack {shown}", file=sys.stderr)
    return json.loads(p.stdout) if fmt and p.stdout.strip() else p.stdout


if args.status:
    print(run("port", "show", "-c", "status", args.status)["status"])
    sys.exit(0)

for need in ("host0", "host1", "vm1_if", "out_if"):
    if getattr(args, need) is None:
        ap.error(f"--{need.replace('_', '-')} is required to build the cloud")

run("network", "create", "--external", "public")
run("subnet", "create", "--network", "public", "--subnet-range", "172.24.4.0/24", "public-v4")
for net, cidr in (("a", "10.10.0.0/24"), ("b", "10.20.0.0/24")):
    run("network", "create", net)
    run("subnet", "create", "--network", net, "--subnet-range", cidr, "--no-dhcp", f"{net}-v4")
run("router", "create", "r1")
run("router", "set", "--external-gateway", "public", "r1", fmt=False)
for sub in ("a-v4", "b-v4"):
    run("router", "add", "subnet", "r1", sub, fmt=False)
gw = run("router", "show", "r1")["external_gateway_info"]
run("security", "group", "create", "ssh-icmp")
run("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
    "--dst-port", "22", "--remote-ip", "0.0.0.0/0", "ssh-icmp")
run("security", "group", "rule", "create", "--ingress", "--protocol", "icmp",
    "--remote-ip", "0.0.0.0/0", "ssh-icmp")


def port(name, net, host, interface, *extra):
    cmd = ["port", "create", "--network", net, "--host", host]
    if interface:
        cmd += ["--binding-profile", f"interface_name={interface}"]
    p = run(*cmd, *extra, name)
    fixed = p["fixed_ips"][0]
    subnet = run("subnet", "show", fixed["subnet_id"])
    return {"id": p["id"], "ip": fixed["ip_address"], "mac": p["mac_address"],
            "prefix_len": int(subnet["cidr"].split("/")[1]), "gateway": subnet["gateway_ip"]}


ports = {
    "vm1": port("vm1", "a", args.host0, args.vm1_if, "--security-group", "ssh-icmp"),
    "vm2": port("vm2", "b", args.host1, None, "--security-group", "ssh-icmp"),
    "out": port("out", "public", args.host0, args.out_if, "--disable-port-security",
                "--no-security-group"),
}
fip = run("floating", "ip", "create", "--port", "vm2", "public")
print(json.dumps({
    "gateway_ip": gw["external_fixed_ips"][0]["ip_address"],
    "floating_ip": fip["floating_ip_address"],
    "ports": ports,
}))
