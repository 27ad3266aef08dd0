"""Drive a midonet-rs cluster with the real MidoNet Python client.

Run through run.sh, which builds the patched midonetclient 5.2.0 venv:

    probe.py --url URL [--user U --password P --project P] --cli PATH/midonet-cli

Every step asserts on what the server answered; the first failure prints the
step, the cause, and exits 1. The steps follow what OpenStack's MidoNet plugin
and operators did with this library, then
run a few `midonet-cli -e` commands as separate processes.
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import traceback
import uuid

from midonetclient.api import MidonetApi
from webob import exc as webexc

TENANT = "probe-tenant"
STEP = ["start"]


def step(name):
    STEP[0] = name
    print("  .. " + name, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def ids(objs):
    return sorted(o.get_id() for o in objs)


def run_library(api):
    step("list bridges of a fresh tenant")
    eq(api.get_bridges({"tenant_id": TENANT}), [], "bridges of a new tenant")

    step("create bridge")
    br = api.add_bridge().name("probe-br0").tenant_id(TENANT).create()
    check(uuid.UUID(br.get_id()), "bridge id is a UUID")
    eq(br.get_name(), "probe-br0", "bridge name")
    eq(br.get_tenant_id(), TENANT, "bridge tenant")

    step("list and get bridge")
    check(br.get_id() in ids(api.get_bridges({"tenant_id": TENANT})), "new bridge is listed")
    eq(api.get_bridge(br.get_id()).get_name(), "probe-br0", "bridge by id")

    step("update bridge (PUT of the whole DTO)")
    br.name("probe-br1").update()
    eq(api.get_bridge(br.get_id()).get_name(), "probe-br1", "renamed bridge")

    step("add bridge port")
    bp = br.add_port().create()
    eq(bp.get_type(), "Bridge", "bridge port type")
    eq(bp.get_device_id(), br.get_id(), "bridge port device")
    check(bp.get_id() in ids(br.get_ports()), "bridge port is listed under the bridge")

    step("create router and router port")
    rt = api.add_router().name("probe-rt0").tenant_id(TENANT).create()
    eq(rt.get_name(), "probe-rt0", "router name")
    rp = (rt.add_port().port_address("10.0.0.1").network_address("10.0.0.0")
          .network_length(24).port_mac("02:00:00:aa:bb:cc").create())
    eq(rp.get_type(), "Router", "router port type")
    eq(rp.get_port_address(), "10.0.0.1", "portAddress")
    eq(rp.get_network_address(), "10.0.0.0", "networkAddress")
    eq(int(rp.get_network_length()), 24, "networkLength")
    eq(rp.get_port_mac().lower(), "02:00:00:aa:bb:cc", "portMac")

    step("link router port to bridge port; both peers set")
    rp.link(bp.get_id())
    eq(api.get_port(rp.get_id()).get_peer_id(), bp.get_id(), "router port peer")
    eq(api.get_port(bp.get_id()).get_peer_id(), rp.get_id(), "bridge port peer")

    step("add route and list it")
    route = api.add_router_route(rt, dst_network_addr="10.1.0.0", dst_network_length=16,
                                 src_network_addr="0.0.0.0", src_network_length=0,
                                 next_hop_port=rp.get_id(), next_hop_gateway="10.0.0.254")
    eq(route.get_dst_network_addr(), "10.1.0.0", "route dst")
    eq(int(route.get_dst_network_length()), 16, "route dst length")
    eq(route.get_next_hop_port(), rp.get_id(), "route next hop port")
    eq(int(route.get_weight()), 100, "route default weight")
    check(route.get_id() in ids(rt.get_routes()), "route is listed under the router")

    step("create chain and rules; positions")
    ch = api.add_chain().name("probe-ch0").tenant_id(TENANT).create()
    r_accept = api.add_chain_rule(ch, action="accept", nw_proto=6,
                                  tp_dst={"start": 22, "end": 22},
                                  nw_dst_addr="10.0.0.0", nw_dst_length=24)
    eq(r_accept.get_type(), "accept", "accept rule type")
    r_drop = (ch.add_rule().type("drop").nw_src_address("192.168.0.0").nw_src_length(16)
              .position(1).create())
    rules = ch.get_rules()
    eq([r.get_id() for r in rules], [r_drop.get_id(), r_accept.get_id()], "rule order")
    eq([int(r.get_position()) for r in rules], [1, 2], "rule positions")
    got = api.get_rule(r_accept.get_id()).dto
    eq(got.get("tpDst"), {"start": 22, "end": 22}, "accept rule tpDst")
    eq(got.get("nwDstAddress"), "10.0.0.0", "accept rule nwDstAddress")
    eq(int(got.get("nwDstLength")), 24, "accept rule nwDstLength")
    eq(int(got.get("nwProto")), 6, "accept rule nwProto")

    step("set bridge inbound filter")
    br = api.get_bridge(br.get_id())
    br.inbound_filter_id(ch.get_id()).update()
    eq(api.get_bridge(br.get_id()).get_inbound_filter_id(), ch.get_id(), "inboundFilterId")

    step("port group with a port")
    pg = api.add_port_group().name("probe-pg").tenant_id(TENANT).create()
    pg.add_port_group_port().port_id(bp.get_id()).create()
    eq([p.get_port_id() for p in pg.get_ports()], [bp.get_id()], "port group members")

    step("IP address group and its addresses (through the `addrs` link)")
    ipg = api.add_ip_addr_group().name("probe-ipg").create()
    check("addrs" in ipg.dto, "IP address group DTO has `addrs`: %r" % ipg.dto)
    a4 = ipg.add_ipv4_addr().addr("10.0.0.7").create()
    ipg.add_ipv6_addr().addr("2001:db8::7").create()
    eq(sorted((a.get_addr(), int(a.get_version())) for a in ipg.get_addrs()),
       [("10.0.0.7", 4), ("2001:db8::7", 6)], "IP address group addresses")
    a4.delete()
    eq([a.get_addr() for a in ipg.get_addrs()], ["2001:db8::7"], "addresses after a delete")
    api.delete_ip_addr_group(ipg.get_id())
    check(ipg.get_id() not in ids(api.get_ip_addr_groups()), "IP address group gone")

    step("register a host (agent registration path) with an interface")
    host_id = str(uuid.uuid4())
    h = api.add_host()
    h.dto.update({"id": host_id, "name": "probe-host", "addresses": ["10.9.0.5"]})
    h.create()
    hosts = api.get_hosts()
    check(host_id in ids(hosts), "registered host is listed")
    host = api.get_host(host_id)
    eq(host.get_name(), "probe-host", "host name")
    api.auth.do_request(host.dto["interfaces"], "POST",
                        body={"name": "veth-probe", "mac": "02:00:00:00:99:01", "mtu": 1500},
                        headers={"Content-Type": "application/json"})
    check("veth-probe" in [i.get_name() for i in host.get_interfaces()],
          "registered interface is listed")

    step("tunnel zone with the host as member")
    tz = api.add_vxlan_tunnel_zone().name("probe-tz").create()
    eq(tz.get_type(), "vxlan", "tunnel zone type")
    tz.add_tunnel_zone_host().host_id(host_id).ip_address("10.9.0.5").create()
    members = tz.get_hosts()
    eq([(m.get_host_id(), m.get_ip_address()) for m in members], [(host_id, "10.9.0.5")],
       "tunnel zone members")

    step("bind an exterior port to the host interface")
    xp = br.add_port().create()
    hip = api.add_host_interface_port(host, xp.get_id(), "veth-probe")
    eq(hip.get_port_id(), xp.get_id(), "binding port")
    eq(hip.get_interface_name(), "veth-probe", "binding interface")
    eq([(b.get_port_id(), b.get_interface_name()) for b in host.get_ports()],
       [(xp.get_id(), "veth-probe")], "host bindings")
    bound = api.get_port(xp.get_id())
    eq(bound.get_host_id(), host_id, "bound port hostId")
    eq(bound.get_interface_name(), "veth-probe", "bound port interfaceName")
    hip.delete()
    eq(host.get_ports(), [], "bindings after delete")
    eq(api.get_port(xp.get_id()).get_host_id(), None, "port hostId after unbinding")

    step("unlink (midonetclient also deletes the peer port)")
    rp = api.get_port(rp.get_id())
    api.unlink(rp)
    eq(api.get_port(rp.get_id()).get_peer_id(), None, "router port peer after unlink")
    try:
        api.get_port(bp.get_id())
        raise AssertionError("peer bridge port still exists after api.unlink")
    except webexc.HTTPNotFound:
        pass

    step("delete everything, chains and groups before the devices that use them")
    api.delete_rule(r_drop.get_id())
    eq(ids(ch.get_rules()), [r_accept.get_id()], "rules after deleting one")
    api.delete_route(route.get_id())
    pg.add_port_group_port().port_id(xp.get_id()).create()
    api.delete_port_group(pg.get_id())
    eq(api.get_port(xp.get_id()).dto.get("portGroupIds"), [], "member port after group delete")
    tz.delete()
    eq(api.get_bridge(br.get_id()).get_inbound_filter_id(), ch.get_id(), "filter still set")
    api.delete_chain(ch.get_id())
    eq(api.get_bridge(br.get_id()).get_inbound_filter_id(), None, "filter cleared by chain delete")
    api.delete_router(rt.get_id())
    api.delete_bridge(br.get_id())
    for getter, oid in [(api.get_bridge, br.get_id()), (api.get_router, rt.get_id()),
                        (api.get_chain, ch.get_id()), (api.get_port, xp.get_id()),
                        (api.get_port, rp.get_id())]:
        try:
            getter(oid)
            raise AssertionError("%s still exists after delete" % oid)
        except webexc.HTTPNotFound:
            pass
    check(pg.get_id() not in ids(api.get_port_groups()), "port group gone")
    check(tz.get_id() not in ids(api.get_tunnel_zones()), "tunnel zone gone")
    eq(api.get_bridges({"tenant_id": TENANT}), [], "bridges of the tenant at the end")
    # A host registered through the API has no live agent, so it can be
    # deleted; a cluster that refuses (409: alive) is also within contract.
    try:
        api.auth.do_request(host.dto["uri"], "DELETE")
        check(host_id not in ids(api.get_hosts()), "deleted host is gone")
    except webexc.HTTPConflict:
        print("     (host delete refused with 409: host considered alive)")


def run_cli(args):
    """A few midonet-cli commands, one process each (as operators use it)."""
    home = tempfile.mkdtemp(prefix="mnc-home-")  # no ~/.midonetrc interference
    env = dict(os.environ, HOME=home)
    base = [sys.executable, args.cli, "--midonet-url", args.url]
    if args.user == "-":
        base.append("-A")
    else:
        base += ["-u", args.user, "-i", args.project]
        env["MIDO_PASSWORD"] = args.password

    def cli(*words, tenant=None):
        cmd = list(base) + (["--tenant", tenant] if tenant else []) + ["-e"] + list(words)
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError("midonet-cli %s: rc=%d\nstdout: %s\nstderr: %s"
                                 % (" ".join(words), p.returncode, p.stdout, p.stderr))
        return p.stdout.strip()

    step("midonet-cli: bridge create / list / show / delete")
    bid = cli("bridge", "create", "name", "probe-cli-br", tenant=TENANT)
    check(uuid.UUID(bid), "bridge create prints a UUID, got %r" % bid)
    listing = cli("bridge", "list")
    check(bid in listing and "probe-cli-br" in listing, "bridge list shows it: %r" % listing)
    shown = cli("bridge", bid, "show")
    check("name probe-cli-br" in shown, "bridge show: %r" % shown)

    step("midonet-cli: router port and route")
    rid = cli("router", "create", "name", "probe-cli-rt", tenant=TENANT)
    pid = cli("router", rid, "add", "port", "address", "10.2.0.1", "net", "10.2.0.0/24")
    check(uuid.UUID(pid), "router add port prints a UUID, got %r" % pid)
    cli("router", rid, "add", "route", "src", "0.0.0.0/0", "dst", "10.3.0.0/16",
        "port", "router", rid, "port", pid)
    routes = cli("router", rid, "list", "route")
    check("dst 10.3.0.0/16" in routes, "router list route: %r" % routes)

    step("midonet-cli: chain rule")
    cid = cli("chain", "create", "name", "probe-cli-ch", tenant=TENANT)
    cli("chain", cid, "add", "rule", "type", "accept", "proto", "6", "dst-port", "22",
        "dst", "10.0.0.0/24")
    rules = cli("chain", cid, "list", "rule")
    check("type accept" in rules and "dst-port 22" in rules, "chain list rule: %r" % rules)

    step("midonet-cli: delete")
    cli("chain", cid, "delete")
    cli("router", rid, "delete")
    cli("bridge", bid, "delete")
    check(bid not in cli("bridge", "list"), "bridge gone after delete")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--user", default="-", help='"-" for no auth')
    ap.add_argument("--password", default="")
    ap.add_argument("--project", default="admin")
    ap.add_argument("--cli", required=True, help="path of the patched midonet-cli script")
    args = ap.parse_args()
    # The library logs every HTTP error at ERROR level, including the 404s
    # this probe provokes on purpose; failures are reported below instead.
    logging.getLogger("midonetclient").setLevel(logging.CRITICAL)

    if args.user == "-":
        api = MidonetApi(args.url, None, None)
    else:
        api = MidonetApi(args.url, args.user, args.password, args.project)
    try:
        print("midonetclient library against %s" % args.url)
        run_library(api)
        print("midonet-cli against %s" % args.url)
        run_cli(args)
    except Exception as e:  # report any failure with the step it happened in
        print("FAILED at step '%s': %s: %s" % (STEP[0], type(e).__name__, e), file=sys.stderr)
        body = getattr(e, "detail", None) or getattr(e, "body", None)
        if body:
            print("server said: %s" % body, file=sys.stderr)
        traceback.print_exc()
        return 1
    print("midonetclient probe: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
