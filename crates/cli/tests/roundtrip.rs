//! CLI round trips against a real cluster: every resource through
//! `midonet <resource> create/list/show/update/delete`, checked against what
//! the server then returns.

mod support;

use serde_json::{json, Value};
use support::{id, start};

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn bridge_crud_by_id_and_name() {
    let Some(s) = start(false) else { return };
    let br = s.json(&["bridge", "create", "--name", "br-a", "--tenant", "t1"]);
    assert_eq!(br["name"], "br-a");
    assert_eq!(br["tenantId"], "t1");
    assert_eq!(br["adminStateUp"], true);
    let b = id(&br);

    assert!(ids(&s.json(&["bridge", "list"])).contains(&b));
    assert_eq!(ids(&s.json(&["bridge", "list", "--tenant", "t1"])), vec![b.clone()]);
    assert_eq!(ids(&s.json(&["bridge", "list", "--tenant", "other"])), Vec::<String>::new());
    // By name as well as by id.
    assert_eq!(id(&s.json(&["bridge", "show", "br-a"])), b);

    let up = s.json(&["bridge", "update", &b, "--name", "br-b", "--admin-state-up", "false"]);
    assert_eq!(up["name"], "br-b");
    assert_eq!(up["adminStateUp"], false);
    assert_eq!(s.json(&["bridge", "show", &b])["name"], "br-b");

    // Table output has the columns and the values.
    let table = s.run(&["bridge", "list"]).expect("table");
    for want in ["ID", "NAME", "TENANT", &b, "br-b"] {
        assert!(table.contains(want), "{want} missing in\n{table}");
    }
    // -o id prints just ids.
    assert_eq!(s.run(&["-o", "id", "bridge", "list"]).expect("ids").trim(), b);

    let out = s.run(&["bridge", "delete", &b]).expect("delete");
    assert!(out.contains("deleted bridge"), "{out}");
    let err = s.fails(&["bridge", "show", &b]);
    assert!(err.contains("no bridge with id"), "{err}");
    let err = s.fails(&["bridge", "show", "br-b"]);
    assert!(err.contains("no bridge named `br-b`"), "{err}");
}

#[test]
fn router_ports_link_routes() {
    let Some(s) = start(false) else { return };
    let r = id(&s.json(&["router", "create", "--name", "r1"]));
    let b = id(&s.json(&["bridge", "create", "--name", "b1"]));
    let rp = s.json(&[
        "port",
        "create",
        "--router",
        "r1",
        "--port-address",
        "10.0.0.1",
        "--network",
        "10.0.0.0/24",
        "--port-mac",
        "02:00:00:aa:bb:cc",
    ]);
    assert_eq!(rp["type"], "Router");
    assert_eq!(rp["deviceId"], r.as_str());
    assert_eq!(rp["portAddress"], "10.0.0.1");
    assert_eq!(rp["networkAddress"], "10.0.0.0");
    assert_eq!(rp["networkLength"], 24);
    let rp = id(&rp);
    let bp = s.json(&["port", "create", "--bridge", &b]);
    assert_eq!(bp["type"], "Bridge");
    let bp = id(&bp);

    assert_eq!(ids(&s.json(&["port", "list", "--bridge", "b1"])), vec![bp.clone()]);
    assert!(ids(&s.json(&["port", "list"])).contains(&rp));

    let linked = s.json(&["port", "link", &rp, "--peer", &bp]);
    assert_eq!(linked["peerId"], bp.as_str());
    assert_eq!(s.json(&["port", "show", &bp])["peerId"], rp.as_str());

    let route = s.json(&[
        "route",
        "create",
        "--router",
        &r,
        "--dst",
        "10.1.0.0/16",
        "--next-hop-port",
        &rp,
        "--next-hop-gateway",
        "10.0.0.254",
    ]);
    assert_eq!(route["dstNetworkAddr"], "10.1.0.0");
    assert_eq!(route["dstNetworkLength"], 16);
    assert_eq!(route["weight"], 100);
    assert_eq!(route["type"], "Normal");
    let route_id = id(&route);
    assert!(ids(&s.json(&["route", "list", "--router", &r])).contains(&route_id));
    let table = s.run(&["route", "list", "--router", "r1"]).expect("table");
    assert!(table.contains("10.1.0.0/16"), "{table}");
    s.run(&["route", "delete", &route_id]).expect("delete route");
    assert!(!ids(&s.json(&["route", "list", "--router", &r])).contains(&route_id));
    let err = s.fails(&["route", "list"]);
    assert!(err.contains("--router"), "{err}");

    let unlinked = s.json(&["port", "unlink", &rp]);
    assert!(unlinked["peerId"].is_null(), "{unlinked}");
    assert!(s.json(&["port", "show", &bp])["peerId"].is_null());

    s.run(&["port", "delete", &rp, &bp]).expect("delete ports");
    s.run(&["router", "delete", &r]).expect("delete router");
    s.run(&["bridge", "delete", &b]).expect("delete bridge");
}

#[test]
fn chain_rules_conditions_and_positions() {
    let Some(s) = start(false) else { return };
    let c = id(&s.json(&["chain", "create", "--name", "web"]));
    let other = id(&s.json(&["chain", "create", "--name", "other"]));
    let accept = s.json(&[
        "rule",
        "create",
        "--chain",
        "web",
        "--type",
        "accept",
        "--nw-proto",
        "tcp",
        "--tp-dst",
        "80:81",
        "--nw-dst",
        "10.0.0.0/24",
        "--inv-nw-src",
        "--nw-src",
        "192.168.0.0/16",
    ]);
    assert_eq!(accept["nwProto"], 6);
    assert_eq!(accept["tpDst"], json!({"start": 80, "end": 81}));
    assert_eq!(accept["nwDstAddress"], "10.0.0.0");
    assert_eq!(accept["nwDstLength"], 24);
    assert_eq!(accept["invNwSrc"], true);
    let drop = s.json(&[
        "rule",
        "create",
        "--chain",
        &c,
        "--type",
        "drop",
        "--dl-type",
        "arp",
        "--position",
        "1",
    ]);
    let jump = s.json(&[
        "rule",
        "create",
        "--chain",
        &c,
        "--type",
        "jump",
        "--jump-chain",
        "other",
        "--position",
        "3",
        "--set",
        "nwTos=4",
    ]);
    assert_eq!(jump["jumpChainId"], other.as_str());
    assert_eq!(jump["nwTos"], 4);

    let rules = s.json(&["rule", "list", "--chain", "web"]);
    assert_eq!(ids(&rules), vec![id(&drop), id(&accept), id(&jump)]);
    let positions: Vec<i64> = rules
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["position"].as_i64().expect("position"))
        .collect();
    assert_eq!(positions, vec![1, 2, 3]);

    let table = s.run(&["rule", "list", "--chain", &c]).expect("table");
    assert!(
        table.contains("nw-proto=6")
            && table.contains("!nw-src=192.168.0.0/16")
            && table.contains("tp-dst=80-81"),
        "{table}"
    );

    // Rules as bridge filters.
    let b = id(&s.json(&["bridge", "create", "--name", "fb", "--inbound-filter", "web"]));
    assert_eq!(s.json(&["bridge", "show", &b])["inboundFilterId"], c.as_str());
    s.json(&["bridge", "update", &b, "--set", "inboundFilterId=null"]);
    assert!(s.json(&["bridge", "show", &b])["inboundFilterId"].is_null());

    s.run(&["rule", "delete", &id(&drop)]).expect("delete rule");
    assert_eq!(ids(&s.json(&["rule", "list", "--chain", &c])).len(), 2);
    s.run(&["rule", "delete", &id(&jump)]).expect("delete jump rule");
    s.run(&["chain", "delete", &c, &other]).expect("delete chains");
    s.run(&["bridge", "delete", &b]).expect("delete bridge");
}

#[test]
fn groups_dhcp_and_tables() {
    let Some(s) = start(false) else { return };
    let b = id(&s.json(&["bridge", "create", "--name", "gb"]));
    let p = id(&s.json(&["port", "create", "--bridge", &b]));

    let pg = id(&s.json(&["port-group", "create", "--name", "pg1", "--stateful", "true"]));
    let m = s.json(&["port-group-port", "add", "--port-group", "pg1", "--port", &p]);
    assert_eq!(m["portId"], p.as_str());
    let members = s.json(&["port-group-port", "list", "--port-group", &pg]);
    assert_eq!(members.as_array().expect("array").len(), 1);
    s.run(&["port-group-port", "delete", "--port-group", &pg, &p]).expect("remove member");
    assert_eq!(s.json(&["port-group-port", "list", "--port-group", &pg]), json!([]));

    let g = id(&s.json(&["ip-addr-group", "create", "--name", "ipg"]));
    s.json(&["ip-addr-group-addr", "add", "--ip-addr-group", &g, "--addr", "10.0.0.7"]);
    let addrs = s.json(&["ip-addr-group-addr", "list", "--ip-addr-group", "ipg"]);
    assert_eq!(addrs[0]["addr"], "10.0.0.7");
    s.run(&["ip-addr-group-addr", "delete", "--ip-addr-group", &g, "10.0.0.7"])
        .expect("remove addr");
    assert_eq!(s.json(&["ip-addr-group-addr", "list", "--ip-addr-group", &g]), json!([]));

    let sub = s.json(&[
        "dhcp-subnet",
        "create",
        "--bridge",
        &b,
        "--subnet",
        "10.0.0.0/24",
        "--gateway",
        "10.0.0.1",
        "--dns",
        "8.8.8.8,1.1.1.1",
        "--mtu",
        "1450",
    ]);
    assert_eq!(sub["subnetPrefix"], "10.0.0.0");
    assert_eq!(sub["subnetLength"], 24);
    assert_eq!(sub["dnsServerAddrs"], json!(["8.8.8.8", "1.1.1.1"]));
    let shown = s.json(&["dhcp-subnet", "show", "--bridge", &b, "10.0.0.0/24"]);
    assert_eq!(shown["defaultGateway"], "10.0.0.1");
    let h = s.json(&[
        "dhcp-host",
        "add",
        "--bridge",
        &b,
        "--subnet",
        "10.0.0.0/24",
        "--mac",
        "02:00:00:00:00:05",
        "--ip",
        "10.0.0.5",
        "--name",
        "vm5",
    ]);
    assert_eq!(h["ipAddr"], "10.0.0.5");
    let hosts = s.json(&["dhcp-host", "list", "--bridge", &b, "--subnet", "10.0.0.0/24"]);
    assert_eq!(
        hosts[0]["macAddr"].as_str().map(str::to_ascii_lowercase).as_deref(),
        Some("02:00:00:00:00:05")
    );
    s.run(&["dhcp-host", "delete", "--bridge", &b, "--subnet", "10.0.0.0/24", "02:00:00:00:00:05"])
        .expect("delete dhcp host");
    s.run(&["dhcp-subnet", "delete", "--bridge", &b, "10.0.0.0/24"]).expect("delete subnet");
    assert_eq!(s.json(&["dhcp-subnet", "list", "--bridge", &b]), json!([]));

    s.json(&["mac-entry", "add", "--bridge", &b, "--mac", "02:00:00:00:00:09", "--port", &p]);
    let macs = s.json(&["mac-entry", "list", "--bridge", &b]);
    assert_eq!(macs[0]["portId"], p.as_str());
    s.run(&["mac-entry", "delete", "--bridge", &b, "02:00:00:00:00:09"]).expect("delete mac");
    assert_eq!(s.json(&["mac-entry", "list", "--bridge", &b]), json!([]));

    s.json(&["arp-entry", "add", "--bridge", &b, "--ip", "10.0.0.9", "--mac", "02:00:00:00:00:09"]);
    assert_eq!(s.json(&["arp-entry", "list", "--bridge", &b])[0]["ip"], "10.0.0.9");
    s.run(&["arp-entry", "delete", "--bridge", &b, "10.0.0.9"]).expect("delete arp");
    assert_eq!(s.json(&["arp-entry", "list", "--bridge", &b]), json!([]));

    s.run(&["port-group", "delete", &pg]).expect("delete pg");
    s.run(&["ip-addr-group", "delete", &g]).expect("delete ipg");
    s.run(&["bridge", "delete", &b]).expect("delete bridge");
}

#[test]
fn hosts_bindings_and_tunnel_zones() {
    let Some(s) = start(false) else { return };
    let h = s.register_host("hv1", "10.9.0.1", "veth-vm1");
    let hosts = s.json(&["host", "list"]);
    assert!(ids(&hosts).contains(&h));
    assert_eq!(s.json(&["host", "show", "hv1"])["id"], h.as_str());
    let ifaces = s.json(&["host", "interfaces", &h]);
    assert!(ifaces.as_array().expect("array").iter().any(|i| i["name"] == "veth-vm1"), "{ifaces}");
    assert!(s.run(&["host", "interfaces", &h]).expect("table").contains("veth-vm1"));
    let updated = s.json(&["host", "update", "hv1", "--flooding-proxy-weight", "5"]);
    assert_eq!(updated["floodingProxyWeight"], 5);
    assert_eq!(updated["name"], "hv1");
    // Hosts are registered by agents; the CLI offers no create.
    let err = s.fails(&["host", "create"]);
    assert!(err.contains("unrecognized subcommand"), "{err}");

    let b = id(&s.json(&["bridge", "create", "--name", "hb"]));
    let p = id(&s.json(&["port", "create", "--bridge", &b]));
    let bind = s.json(&["binding", "add", "--host", &h, "--port", &p, "--interface", "veth-vm1"]);
    assert_eq!(bind["interfaceName"], "veth-vm1");
    let port = s.json(&["port", "show", &p]);
    assert_eq!(port["hostId"], h.as_str());
    assert_eq!(port["interfaceName"], "veth-vm1");
    assert_eq!(s.json(&["binding", "list", "--host", "hv1"])[0]["portId"], p.as_str());
    s.run(&["binding", "delete", "--host", &h, &p]).expect("unbind");
    assert_eq!(s.json(&["binding", "list", "--host", &h]), json!([]));
    assert!(s.json(&["port", "show", &p])["hostId"].is_null());

    let tz = s.json(&["tunnel-zone", "create", "--name", "tz1", "--type", "vxlan"]);
    assert_eq!(tz["type"], "vxlan");
    let tz = id(&tz);
    s.json(&[
        "tunnel-zone-member",
        "add",
        "--tunnel-zone",
        "tz1",
        "--host",
        "hv1",
        "--ip",
        "10.9.0.1",
    ]);
    let members = s.json(&["tunnel-zone-member", "list", "--tunnel-zone", &tz]);
    assert_eq!(members[0]["hostId"], h.as_str());
    assert_eq!(members[0]["ipAddress"], "10.9.0.1");
    s.run(&["tunnel-zone-member", "delete", "--tunnel-zone", &tz, &h]).expect("remove member");
    assert_eq!(s.json(&["tunnel-zone-member", "list", "--tunnel-zone", &tz]), json!([]));
    s.run(&["tunnel-zone", "delete", "tz1"]).expect("delete tz");
    s.run(&["bridge", "delete", &b]).expect("delete bridge");
}

#[test]
fn host_credentials_enroll_rotate_revoke() {
    let Some(s) = start(true) else { return };
    // A host not registered yet: enrolled by id, before its agent runs.
    let fresh = uuid::Uuid::new_v4().to_string();
    let token = s.run(&["host", "enroll", &fresh]).expect("enroll");
    let t1 = midonet_proto::credential::Token::parse(&token).expect("a credential");
    assert_eq!(t1.host(), fresh);
    // Rotation, to a file only its owner reads; by a registered host's name.
    let h = s.register_host("hv-cred", "10.9.0.2", "eth0");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("host.credential");
    let out = s
        .run(&["host", "enroll", "hv-cred", "--out", file.to_str().expect("utf-8")])
        .expect("enroll to a file");
    assert!(out.contains(&h), "{out}");
    let t2 =
        midonet_proto::credential::Token::parse(&std::fs::read_to_string(&file).expect("read"))
            .expect("credential in the file");
    assert_eq!(t2.host(), h);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A new id when none is given.
    let v = s.json(&["host", "enroll"]);
    assert!(uuid::Uuid::parse_str(v["hostId"].as_str().expect("hostId")).is_ok(), "{v}");
    // The secret is shown once: the API only says when it was issued.
    let st = s.client().get(&format!("hosts/{h}/credential")).expect("status");
    assert!(st["issuedAt"].as_u64().is_some() && st.get("credential").is_none(), "{st}");
    s.run(&["host", "revoke", "hv-cred"]).expect("revoke");
    let err = s.fails(&["host", "revoke", &h]);
    assert!(err.contains("no credential"), "{err}");
    // Tenants cannot enroll.
    let alice_flags = ["--url", s.url.as_str(), "--config", "/dev/null", "--user", "alice"]
        .into_iter()
        .chain(["--password", "alice"])
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let alice = support::run_with(&alice_flags, &["host", "enroll"]);
    assert!(alice.is_err(), "{alice:?}");
}

#[test]
fn load_balancing_and_mirrors() {
    let Some(s) = start(false) else { return };
    let r = id(&s.json(&["router", "create", "--name", "lbr"]));
    let lb = id(&s.json(&["load-balancer", "create"]));
    s.json(&["router", "update", &r, "--load-balancer", &lb]);
    let hm = id(&s.json(&[
        "health-monitor",
        "create",
        "--delay",
        "5",
        "--timeout",
        "3",
        "--max-retries",
        "2",
    ]));
    let pool = s.json(&["pool", "create", "--load-balancer", &lb, "--health-monitor", &hm]);
    assert_eq!(pool["loadBalancerId"], lb.as_str());
    let pool = id(&pool);
    let member = s.json(&[
        "pool-member",
        "create",
        "--pool",
        &pool,
        "--address",
        "10.0.0.10",
        "--protocol-port",
        "8080",
    ]);
    assert_eq!(member["protocolPort"], 8080);
    let vip = s.json(&[
        "vip",
        "create",
        "--load-balancer",
        &lb,
        "--pool",
        &pool,
        "--address",
        "192.0.2.10",
        "--protocol-port",
        "80",
    ]);
    assert_eq!(vip["address"], "192.0.2.10");
    assert!(ids(&s.json(&["vip", "list"])).contains(&id(&vip)));
    assert!(ids(&s.json(&["pool-member", "list"])).contains(&id(&member)));
    // `lb status`: the member with its VIP, monitor and health (no check
    // has run: the stored default); a pool without monitor says so.
    let bare = id(&s.json(&["pool", "create", "--load-balancer", &lb]));
    let m2 = s.json(&[
        "pool-member",
        "create",
        "--pool",
        &bare,
        "--address",
        "10.0.0.11",
        "--protocol-port",
        "80",
    ]);
    let rows = s.json(&["lb", "status", &lb]);
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let r1 = rows.iter().find(|r| r["memberId"] == id(&member).as_str()).expect("member row");
    assert_eq!(r1["vips"], "192.0.2.10:80");
    assert_eq!(r1["address"], "10.0.0.10:8080");
    assert_eq!(r1["monitor"], "TCP 5s×2");
    assert_eq!(r1["health"], "ACTIVE");
    let r2 = rows.iter().find(|r| r["memberId"] == id(&m2).as_str()).expect("member row");
    assert_eq!(r2["health"], "NO_MONITOR");
    let table = s.run(&["lb", "status"]).expect("status table");
    assert!(table.contains("HEALTH") && table.contains("NO_MONITOR"), "{table}");
    s.run(&["pool-member", "delete", &id(&m2)]).expect("delete member");
    s.run(&["pool", "delete", &bare]).expect("delete pool");

    let b = id(&s.json(&["bridge", "create", "--name", "mb"]));
    let p = id(&s.json(&["port", "create", "--bridge", &b]));
    let mirror =
        s.json(&["mirror", "create", "--to-port", &p, "--conditions", r#"[{"nwProto": 6}]"#]);
    assert_eq!(mirror["toPortId"], p.as_str());
    s.run(&["mirror", "delete", &id(&mirror)]).expect("delete mirror");

    s.run(&["vip", "delete", &id(&vip)]).expect("delete vip");
    s.run(&["pool-member", "delete", &id(&member)]).expect("delete member");
    s.run(&["pool", "delete", &pool]).expect("delete pool");
    s.run(&["health-monitor", "delete", &hm]).expect("delete hm");
    s.json(&["router", "update", &r, "--set", "loadBalancerId=null"]);
    s.run(&["load-balancer", "delete", &lb]).expect("delete lb");
    s.run(&["router", "delete", &r]).expect("delete router");
    s.run(&["bridge", "delete", &b]).expect("delete bridge");
}

#[test]
fn server_errors_name_the_field() {
    let Some(s) = start(false) else { return };
    let r = id(&s.json(&["router", "create", "--name", "er"]));
    let err = s.fails(&[
        "port",
        "create",
        "--router",
        &r,
        "--set",
        "portAddress=not-an-ip",
        "--network",
        "10.0.0.0/24",
    ]);
    assert!(err.contains("400") && err.contains("portAddress"), "{err}");
    // Client-side validation fails before any request.
    let err = s.fails(&["rule", "create", "--chain", "nope", "--tp-dst", "99999"]);
    assert!(err.contains("--tp-dst"), "{err}");
    let err = s.fails(&["port", "create", "--type", "Bridge"]);
    assert!(err.contains("--bridge") && err.contains("--router"), "{err}");
}

#[test]
fn auth_is_required_and_errors_say_which_credentials() {
    let Some(s) = start(true) else { return };
    let url = s.url.clone();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> =
            ["--url", url.as_str(), "--config", "/dev/null"].map(str::to_owned).to_vec();
        v.extend(extra.iter().map(|x| (*x).to_owned()));
        v
    };
    let err = support::run_with(&base(&["--no-auth"]), &["bridge", "list"]).expect_err("401");
    assert!(err.contains("401") && err.contains("--user"), "{err}");
    let err =
        support::run_with(&base(&["--user", "admin", "--password", "wrong"]), &["bridge", "list"])
            .expect_err("bad password");
    assert!(err.contains("login as `admin` failed") && err.contains("--password"), "{err}");
    let err = support::run_with(&base(&["--token", "bogus"]), &["bridge", "list"])
        .expect_err("bad token");
    assert!(err.contains("token"), "{err}");
    // The right credentials work, and the token they produce works alone.
    let b = id(&s.json(&["bridge", "create", "--name", "authed"]));
    let c = s.client();
    c.login().expect("login");
    let token = c.token().expect("token after login");
    let out = support::run_with(&base(&["--token", &token, "-o", "id"]), &["bridge", "list"])
        .expect("token works");
    assert!(out.contains(&b), "{out}");
}

#[test]
fn tenants_see_only_their_own_objects() {
    let Some(s) = start(true) else { return };
    let as_user = |user: &str| -> Vec<String> {
        [
            "--url",
            s.url.as_str(),
            "--config",
            "/dev/null",
            "--user",
            user,
            "--password",
            user,
            "-o",
            "json",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let out = support::run_with(&as_user("alice"), &["bridge", "create", "--name", "alice-br"])
        .expect("alice creates");
    let br: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(br["tenantId"], "tenant-a", "the tenant comes from the token");
    let b = id(&br);

    let bob_list = support::run_with(&as_user("bob"), &["bridge", "list"]).expect("bob lists");
    assert!(!bob_list.contains(&b), "{bob_list}");
    let err =
        support::run_with(&as_user("bob"), &["bridge", "show", &b]).expect_err("hidden from bob");
    assert!(err.contains("no bridge with id"), "{err}");
    // The admin sees everything.
    assert!(ids(&s.json(&["bridge", "list"])).contains(&b));
    // Hosts are admin-only; the error says so.
    let err = support::run_with(&as_user("alice"), &["host", "list"]).expect_err("403");
    assert!(err.contains("403") && err.contains("need an admin"), "{err}");
}

#[test]
fn settings_come_from_the_config_file() {
    let Some(s) = start(true) else { return };
    let path = std::env::temp_dir().join(format!("midonet-cli-test-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        format!("url = \"{}\"\nuser = \"admin\"\npassword = \"admin\"\nproject = \"admin\"\noutput = \"json\"\n", s.url),
    )
    .expect("write config");
    let flags = vec!["--config".to_owned(), path.display().to_string()];
    let out = support::run_with(&flags, &["bridge", "create", "--name", "from-file"]);
    let listed = support::run_with(&flags, &["bridge", "list"]);
    std::fs::remove_file(&path).expect("remove config");
    let created: Value = serde_json::from_str(&out.expect("create with file settings"))
        .expect("output = json from the file");
    assert!(listed.expect("list").contains(&id(&created)));
}
