#!/usr/bin/env python3
"""Control-plane timing for midonet-rs: how long after a REST call the
datapath does what the call asked.

Three roles, one file (no dependencies beyond the standard library):

  cpbench.py echo  IP PORT                  UDP echo server (run in VM 2's netns)
  cpbench.py probe IP PORT INTERVAL OUT     numbered datagrams every INTERVAL s to
                                            IP:PORT (run in VM 1's netns); on SIGTERM
                                            writes "seq sent_at echoed(0|1)" lines to OUT
  cpbench.py measure STATE_JSON OUT_JSON [--reps N] [--interval S]
                                            runs in the root netns: drives the REST
                                            API of a running `midonet sandbox` and
                                            starts echo/probe through `ip netns exec`

What `measure` reports, each REPS times (median in the summary):
  bind:      VM 2's port is unbound; probe running; POST /hosts/{h}/ports binds
             it again -> first datagram sent after the call that got its echo.
  rule_add:  traffic flowing; POST a drop rule (ip4) into the chain that is the
             outbound filter of VM 2's port -> first datagram after the last echo.
  rule_del:  DELETE that rule -> first echoed datagram.
Every figure is given twice: from just before the HTTP request was sent
(`*_from_call`, comparable with ovn.sh, whose t0 is before ovn-nbctl starts)
and from when the API answered (`*_from_return`, what the project's targets
use). A datagram's time is its real send time, so the resolution is INTERVAL.
"""

import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.abspath(__file__)
PORT = 5301


def echo(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    while True:
        data, peer = s.recvfrom(64)
        s.sendto(data, peer)


def probe(ip, port, interval, out):
    """Sends seq numbers; a receive loop marks the ones that come back."""
    done = []
    signal.signal(signal.SIGTERM, lambda *_: done.append(1))
    signal.signal(signal.SIGINT, lambda *_: done.append(1))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    sent_at = []
    echoed = set()
    due = time.time()
    while not done:
        now = time.time()
        if now >= due:
            try:
                s.sendto(struct.pack("!I", len(sent_at)), (ip, port))
            except OSError:
                pass  # e.g. no route yet: counts as a lost datagram
            sent_at.append(now)
            due = max(due + interval, now)
        try:
            ready, _, _ = select.select([s], [], [], max(0.0, due - time.time()))
        except InterruptedError:
            continue
        while ready:
            try:
                echoed.add(struct.unpack("!I", s.recv(64)[:4])[0])
            except (BlockingIOError, InterruptedError, struct.error):
                break
    with open(out, "w") as f:
        for i, t in enumerate(sent_at):
            f.write("%d %.6f %d\n" % (i, t, 1 if i in echoed else 0))


class Api:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, body=None):
        url = path if path.startswith("http") else self.base + "/" + path.lstrip("/")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode() or "null"
            return r.status, r.headers.get("Location"), json.loads(text)

    def create(self, path, body):
        """POST, then the object: from the body, else from Location."""
        _, loc, obj = self.call("POST", path, body)
        if obj is None and loc:
            obj = self.call("GET", loc)[2]
        return obj

    def timed(self, method, path, body=None):
        """(t_before_send, t_answered, location)."""
        t0 = time.time()
        _, loc, _ = self.call(method, path, body)
        return t0, time.time(), loc


class Probe:
    """An echo server in VM 2 and a probe in VM 1, for one measurement."""

    def __init__(self, vm1, vm2, ip, interval):
        self.vm1, self.vm2, self.ip, self.interval = vm1, vm2, ip, interval
        self.out = tempfile.mktemp(prefix="cpbench-", suffix=".txt")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.vm1, sys.executable, HERE, "probe",
                                      self.ip, str(PORT), str(self.interval), self.out])
        time.sleep(0.4)  # python start-up plus a few hundred datagrams of history

    def stop(self):
        time.sleep(0.2)  # let the last echoes come back
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        with open(self.out) as f:
            rows = [l.split() for l in f if l.strip()]
        os.unlink(self.out)
        return [(float(t), e == "1") for _, t, e in rows]


def first_echoed_after(rows, t):
    return next((s for s, ok in rows if s > t and ok), None)


def stop_time(rows):
    """Send time of the first datagram after the last echoed one."""
    last = max((i for i, (_, ok) in enumerate(rows) if ok), default=None)
    if last is None or last + 1 >= len(rows):
        return None
    return rows[last + 1][0]


def ms(a, b):
    return None if a is None or b is None else round((b - a) * 1000.0, 1)


def measure(state_file, out_file, reps, interval):
    st = json.load(open(state_file))
    api = Api(st["api_url"])
    vm1, vm2 = st["vms"][0], st["vms"][1]
    if vm1["bridge"] != vm2["bridge"] or vm1["host"] == vm2["host"]:
        sys.exit("cpbench: VMs 0 and 1 must be on one bridge on two hosts")
    host2 = st["hosts"][vm2["host"]]["id"]
    port2 = vm2["port_id"]
    echo_p = subprocess.Popen(["ip", "netns", "exec", vm2["ns"], sys.executable, HERE, "echo", vm2["ip"], str(PORT)])
    probe = Probe(vm1["ns"], vm2["ns"], vm2["ip"], interval)
    res = {k: [] for k in ("bind_from_call", "bind_from_return", "rule_add_from_call", "rule_add_from_return",
                           "rule_del_from_call", "rule_del_from_return", "bind_api_ms", "rule_api_ms")}
    warnings = []
    try:
        # A chain as VM 2's outbound filter (a port filter, like an OVN
        # to-lport ACL); rules are added to and removed from it below.
        chain = api.create("chains", {"name": "cpbench"})
        _, _, port = api.call("GET", "ports/" + port2)
        port["outboundFilterId"] = chain["id"]
        api.call("PUT", "ports/" + port2, port)
        time.sleep(1.0)
        probe.start()
        rows = probe.stop()
        if not any(ok for _, ok in rows):
            sys.exit("cpbench: the probe gets no echo before measuring; is the sandbox forwarding?")
        for r in range(reps):
            # 1. bind: unbind, make sure traffic stopped, bind again.
            api.call("DELETE", "hosts/%s/ports/%s" % (host2, port2))
            time.sleep(1.0)
            probe.start()
            t0, t1, _ = api.timed("POST", "hosts/%s/ports" % host2, {"portId": port2, "interfaceName": vm2["host_if"]})
            time.sleep(1.5)
            rows = probe.stop()
            if any(ok for s, ok in rows if s < t0):
                warnings.append("rep %d bind: echoes while the port was unbound" % r)
            x = first_echoed_after(rows, t0)
            res["bind_from_call"].append(ms(t0, x))
            res["bind_from_return"].append(ms(t1, x))
            res["bind_api_ms"].append(ms(t0, t1))
            # 2. drop rule while traffic flows.
            time.sleep(0.3)
            probe.start()
            t0 = time.time()
            _, loc, rule = api.call("POST", "chains/%s/rules" % chain["id"], {"type": "drop", "dlType": 2048, "position": 1})
            t1 = time.time()
            time.sleep(1.0)
            rows = probe.stop()
            if rule is None:
                rule = api.call("GET", loc)[2]
            x = stop_time(rows)
            if any(ok for s, ok in rows if s > t1 + 0.1):
                warnings.append("rep %d rule_add: echoes more than 100 ms after the API returned" % r)
                x = None
            res["rule_add_from_call"].append(ms(t0, x))
            res["rule_add_from_return"].append(ms(t1, x))
            res["rule_api_ms"].append(ms(t0, t1))
            # 3. rule removed: traffic flows again.
            probe.start()
            t0, t1, _ = api.timed("DELETE", "rules/" + rule["id"])
            time.sleep(1.0)
            rows = probe.stop()
            x = first_echoed_after(rows, t0)
            res["rule_del_from_call"].append(ms(t0, x))
            res["rule_del_from_return"].append(ms(t1, x))
            print("cpbench rep %d: bind %s ms (from call; api %s ms), rule add %s ms, rule del %s ms (from return)" % (
                r + 1, res["bind_from_call"][-1], res["bind_api_ms"][-1], res["rule_add_from_return"][-1],
                res["rule_del_from_return"][-1]), file=sys.stderr)
        # Leave the sandbox as it was.
        _, _, port = api.call("GET", "ports/" + port2)
        port["outboundFilterId"] = None
        api.call("PUT", "ports/" + port2, port)
        api.call("DELETE", "chains/" + chain["id"])
    except urllib.error.HTTPError as e:
        sys.exit("cpbench: API error %s %s: %s" % (e.code, e.url, e.read()[:300]))
    finally:
        if probe.proc and probe.proc.poll() is None:
            probe.proc.kill()
        echo_p.kill()
        echo_p.wait()
    summary = {}
    for k, v in res.items():
        good = [x for x in v if x is not None]
        summary[k] = {"median": statistics.median(good) if good else None, "runs": v}
    summary["warnings"] = warnings
    summary["interval_s"] = interval
    with open(out_file, "w") as f:
        json.dump(summary, f, indent=1)


def main(argv):
    if len(argv) >= 3 and argv[0] == "echo":
        echo(argv[1], int(argv[2]))
    elif len(argv) >= 5 and argv[0] == "probe":
        probe(argv[1], int(argv[2]), float(argv[3]), argv[4])
    elif len(argv) >= 3 and argv[0] == "measure":
        reps, interval = 3, 0.001
        rest = argv[3:]
        while rest:
            if rest[0] == "--reps":
                reps, rest = int(rest[1]), rest[2:]
            elif rest[0] == "--interval":
                interval, rest = float(rest[1]), rest[2:]
            else:
                sys.exit("unknown option " + rest[0])
        measure(argv[1], argv[2], reps, interval)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
