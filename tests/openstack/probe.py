"""Drives the real `openstack` CLI through the commands of
shared/reference/clients.md §B4 against our Neutron API and checks each
result. Prints one line per step; exits non-zero at the first failure.

    probe.py --openstack BIN --endpoint URL [AUTH_URL USER PASSWORD PROJECT]
"""
import argparse
import json
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--openstack", required=True)
ap.add_argument("--endpoint", required=True)
ap.add_argument("keystone", nargs="*")
args = ap.parse_args()

if args.keystone:
    auth_url, user, password, project = args.keystone
    base = [args.openstack, "--os-auth-url", auth_url, "--os-username", user,
            "--os-password", password, "--os-project-name", project,
            "--os-user-domain-name", "Default", "--os-project-domain-name", "Default",
            "--os-identity-api-version", "3", "--os-region-name", "RegionOne"]
else:
    base = [args.openstack, "--os-auth-type", "none", "--os-endpoint", args.endpoint]

steps = 0


def run(*cmd, fmt=True, ok=True):
    """Runs `openstack CMD`; returns parsed JSON output (or text)."""
    global steps
    full = base + list(cmd) + (["-f", "json"] if fmt else [])
    p = subprocess.run(full, capture_output=True, text=True, timeout=120)
    steps += 1
    shown = " ".join(cmd)
    if ok and p.returncode != 0:
        print(f"FAIL openstack {shown}: rc={p.returncode}\n{p.stdout}\n{p.stderr}")
        sys.exit(1)
    if not ok and p.returncode == 0:
        print(f"FAIL openstack {shown}: expected an error, got:\n{p.stdout}")
        sys.exit(1)
    print(f"ok   openstack {shown}")
    if not ok:
        return p.stderr
    if fmt and p.stdout.strip():
        return json.loads(p.stdout)
    return p.stdout


def check(cond, what):
    if not cond:
        print(f"FAIL check: {what}")
        sys.exit(1)


def ips(fixed):
    # `-f json` renders fixed_ips as a list of dicts.
    return [f["ip_address"] for f in fixed]


# Networks.
n1 = run("network", "create", "n1")
check(n1["name"] == "n1" and n1["admin_state_up"] is True, f"network n1: {n1}")
ext = run("network", "create", "--external", "ext-net")
check(ext["router:external"] is True, f"ext-net is external: {ext}")
names = {n["Name"] for n in run("network", "list")}
check({"n1", "ext-net"} <= names, f"network list: {names}")
check([n["Name"] for n in run("network", "list", "--name", "n1")] == ["n1"], "list --name")
check([n["Name"] for n in run("network", "list", "--external")] == ["ext-net"], "list --external")
check(run("network", "show", "n1")["id"] == n1["id"], "show by name")
run("network", "set", "--description", "hello", "n1", fmt=False)
check(run("network", "show", "n1")["description"] == "hello", "description set")

# Subnets.
s1 = run("subnet", "create", "--network", "n1", "--subnet-range", "10.0.0.0/24", "s1")
check(s1["gateway_ip"] == "10.0.0.1", f"gateway: {s1}")
es = run("subnet", "create", "--network", "ext-net", "--subnet-range", "172.24.4.0/24",
         "--no-dhcp", "ext-sub")
check(es["enable_dhcp"] is False, f"no dhcp: {es}")
check(len(run("subnet", "list")) == 2, "subnet list")
check([s["Name"] for s in run("subnet", "list", "--network", "n1")] == ["s1"], "subnet list --network")
check(run("subnet", "show", "s1")["cidr"] == "10.0.0.0/24", "subnet show")

# Ports.
p1 = run("port", "create", "--network", "n1", "p1")
# An address of the pool, picked at random among the first free ones (as
# Neutron's IPAM does).
p1_ip = ips(p1["fixed_ips"])[0]
check(p1_ip.startswith("10.0.0.") and 2 <= int(p1_ip.split(".")[3]) <= 254, f"p1 address: {p1['fixed_ips']}")
p2_ip = "10.0.0.51" if p1_ip == "10.0.0.50" else "10.0.0.50"
p2 = run("port", "create", "--network", "n1", "--fixed-ip", f"subnet=s1,ip-address={p2_ip}", "p2")
check(ips(p2["fixed_ips"]) == [p2_ip], f"p2 address: {p2['fixed_ips']}")
check(len(run("port", "list")) == 2, "port list")
check(len(run("port", "list", "--network", "n1")) == 2, "port list --network")
check(run("port", "show", "p1")["mac_address"].startswith("fa:16:3e:"), "port show")

# Routers.
r1 = run("router", "create", "r1")
check(r1["name"] == "r1", f"router: {r1}")
check([r["Name"] for r in run("router", "list")] == ["r1"], "router list")
run("router", "add", "subnet", "r1", "s1", fmt=False)
run("router", "set", "--external-gateway", "ext-net", "r1", fmt=False)
r = run("router", "show", "r1")
gw = r["external_gateway_info"]
check(gw["network_id"] == ext["id"] and gw["enable_snat"] is True, f"gateway: {gw}")
check(any(i["ip_address"] == "10.0.0.1" for i in r["interfaces_info"]), f"interfaces: {r['interfaces_info']}")

# Floating IPs.
f = run("floating", "ip", "create", "ext-net")
fid = f["id"]
check(f["floating_ip_address"].startswith("172.24.4."), f"floating address: {f}")
check(len(run("floating", "ip", "list")) == 1, "floating ip list")
run("floating", "ip", "set", "--port", "p1", fid, fmt=False)
f = run("floating", "ip", "show", fid)
check(f["fixed_ip_address"] == p1_ip and f["port_id"] == p1["id"], f"associated: {f}")
check(f["router_id"] == r1["id"] and f["status"] == "ACTIVE", f"through r1: {f}")
run("floating", "ip", "unset", "--port", fid, fmt=False)
check(run("floating", "ip", "show", fid)["port_id"] is None, "disassociated")
run("floating", "ip", "delete", fid, fmt=False)

# Security groups.
sg = run("security", "group", "create", "--description", "web", "sg1")
check(len(sg["rules"]) == 2 if isinstance(sg.get("rules"), list) else True, f"default egress rules: {sg}")
rule = run("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
           "--remote-ip", "0.0.0.0/0", "--ingress", "sg1")
check(rule["port_range_min"] == 22 and rule["direction"] == "ingress", f"rule: {rule}")
check(len(run("security", "group", "rule", "list", "sg1")) == 3, "rule list")
check(any(g["Name"] == "sg1" for g in run("security", "group", "list")), "group list")
check(run("security", "group", "show", "sg1")["description"] == "web", "group show")
check(run("security", "group", "rule", "show", rule["id"])["protocol"] == "tcp", "rule show")
run("security", "group", "rule", "delete", rule["id"], fmt=False)
run("security", "group", "delete", "sg1", fmt=False)

# Errors are errors.
err = run("network", "show", "no-such-network", ok=False)
check("no-such-network" in err, f"error names it: {err}")
err = run("subnet", "create", "--network", "n1", "--subnet-range", "10.0.0.128/25", "s2", ok=False)
check("overlaps" in err, f"overlap refused: {err}")

# Tear down.
run("router", "unset", "--external-gateway", "r1", fmt=False)
run("router", "remove", "subnet", "r1", "s1", fmt=False)
run("router", "delete", "r1", fmt=False)
run("port", "delete", "p1", "p2", fmt=False)
run("subnet", "delete", "s1", fmt=False)
run("network", "delete", "n1", "ext-net", fmt=False)
check(run("network", "list") == [], "nothing left")
print(f"all steps passed ({steps} openstack commands)")
