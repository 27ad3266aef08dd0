//! CRUD of every resource and sub-resource over HTTP.
mod common;
use common::{host, Api};
use midonet_cluster::testing::TestCluster;
use serde_json::{json, Value};

fn setup() -> (TestCluster, Api) {
    let c = TestCluster::start("memory:", true);
    let api = Api::new(&c.url(), Some(c.admin_token()));
    (c, api)
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no string {k} in {v}")).to_string()
}

#[test]
fn core_scenario_on_memory_store() {
    let (_c, api) = setup();
    common::core_scenario(&api);
}

/// Create, get, list, update (PUT of the whole fetched DTO) and delete for
/// each simple top-level collection.
#[test]
fn top_level_crud_for_every_simple_kind() {
    let (_c, api) = setup();
    let cases: Vec<(&str, Value, &str, Value)> = vec![
        ("/bridges", json!({"name": "b"}), "name", json!("b2")),
        ("/routers", json!({"name": "r", "asNumber": "65000"}), "name", json!("r2")),
        ("/chains", json!({"name": "c"}), "name", json!("c2")),
        ("/port_groups", json!({"name": "pg", "stateful": "true"}), "name", json!("pg2")),
        ("/ip_addr_groups", json!({"name": "ipg"}), "name", json!("ipg2")),
        ("/tunnel_zones", json!({"name": "tz", "type": "vxlan"}), "name", json!("tz2")),
        ("/load_balancers", json!({}), "adminStateUp", json!(false)),
        ("/health_monitors", json!({"type": "TCP", "delay": "3"}), "delay", json!(7)),
    ];
    for (coll, body, field, new) in cases {
        let created = api.create(coll, &body);
        let uri = s(&created, "uri");
        assert!(uri.starts_with(&format!("{}{coll}/", api.base)), "{uri}");
        assert_eq!(api.count(coll), 1, "{coll}");
        let mut dto = api.ok(&uri);
        dto[field] = new.clone();
        api.put(&uri, &dto).expect(204);
        assert_eq!(api.ok(&uri)[field], new, "{coll}");
        api.delete(&uri).expect(204);
        api.get(&uri).expect(404);
        assert_eq!(api.count(coll), 0, "{coll}");
    }
}

#[test]
fn ports_routes_and_links() {
    let (_c, api) = setup();
    let b = api.create("/bridges", &json!({"name": "b"}));
    let r = api.create("/routers", &json!({"name": "r"}));
    let bp = api.create(&s(&b, "ports"), &json!({"type": "Bridge", "vlanId": "10"}));
    assert_eq!(bp["deviceId"], b["id"]);
    assert_eq!(bp["active"], false);
    for link in ["link", "device", "portGroups"] {
        assert!(s(&bp, link).starts_with("http://"), "{link}");
    }
    let rp = api.create(
        &s(&r, "ports"),
        &json!({"portAddress": "192.168.1.1", "networkAddress": "192.168.1.0", "networkLength": 24, "portMac": "02:00:00:aa:bb:cc"}),
    );
    assert_eq!(rp["type"], "Router");
    assert_eq!(rp["portMac"], "02:00:00:aa:bb:cc");
    assert_eq!(api.count("/ports"), 2);
    assert_eq!(api.count(&s(&b, "ports")), 1);
    // Only the Local /32 to the port's address, as MidoNet: no route to
    // the port's subnet (that one is the operator's to add).
    let routes = api.ok(&s(&r, "routes"));
    let mut dsts: Vec<String> = routes
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            format!(
                "{} {}/{}",
                r["type"].as_str().unwrap_or(""),
                r["dstNetworkAddr"].as_str().unwrap_or(""),
                r["dstNetworkLength"]
            )
        })
        .collect();
    dsts.sort();
    assert_eq!(dsts, vec!["Local 192.168.1.1/32"]);
    // A user route, fetched through routeTemplate, then deleted.
    let root = api.ok("");
    let route = api.create(
        &s(&r, "routes"),
        &json!({"srcNetworkAddr": "0.0.0.0", "srcNetworkLength": "0", "dstNetworkAddr": "10.9.0.0", "dstNetworkLength": "16", "nextHopPort": rp["id"], "nextHopGateway": "192.168.1.254"}),
    );
    assert_eq!(route["weight"], 100);
    let by_template = s(&root, "routeTemplate").replace("{id}", &s(&route, "id"));
    assert_eq!(api.ok(&by_template)["nextHopGateway"], "192.168.1.254");
    // Link via {peerId}; peer ports lists show them.
    api.post(&s(&rp, "link"), &json!({"peerId": bp["id"]})).expect(201);
    assert_eq!(api.count(&s(&b, "peerPorts")), 1);
    assert_eq!(api.count(&s(&r, "peerPorts")), 1);
    let linked = api.ok(&s(&rp, "uri"));
    assert_eq!(s(&linked, "peer"), s(&bp, "uri"));
    // PUT with the same peerId is fine; a different one is 400.
    api.put(&s(&rp, "uri"), &linked).expect(204);
    let mut other = linked.clone();
    other["peerId"] = json!(uuid_str());
    assert_eq!(api.put(&s(&rp, "uri"), &other).expect(400).field(), Some("peerId"));
    // Unlink both sides.
    api.delete(&s(&rp, "link")).expect(204);
    assert!(api.ok(&s(&bp, "uri"))["peerId"].is_null());
    assert!(api.ok(&s(&rp, "uri"))["peerId"].is_null());
    // Deleting the router port deletes routes through it.
    api.delete(&s(&rp, "uri")).expect(204);
    assert_eq!(api.count(&s(&r, "routes")), 0);
    api.get(&by_template).expect(404);
}

fn uuid_str() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[test]
fn router_port_address_change_moves_system_routes() {
    let (_c, api) = setup();
    let r = api.create("/routers", &json!({"name": "r"}));
    let rp = api.create(
        &s(&r, "ports"),
        &json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24}),
    );
    let mut dto = api.ok(&s(&rp, "uri"));
    // PUT bodies may omit read-only fields such as `type`.
    dto.as_object_mut().expect("object").remove("type");
    dto["portAddress"] = json!("10.1.0.1");
    dto["networkAddress"] = json!("10.1.0.0");
    api.put(&s(&rp, "uri"), &dto).expect(204);
    let routes = api.ok(&s(&r, "routes"));
    let dsts: Vec<&str> = routes
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["dstNetworkAddr"].as_str())
        .collect();
    assert_eq!(dsts, vec!["10.1.0.1"], "the Local /32 moved with the address");
    assert_eq!(api.ok(&s(&rp, "uri"))["portMac"], rp["portMac"], "MAC kept when PUT omits it");
}

#[test]
fn rules_by_position_and_template_and_jump() {
    let (_c, api) = setup();
    let c = api.create("/chains", &json!({"name": "c"}));
    let target = api.create("/chains", &json!({"name": "target"}));
    let rules = s(&c, "rules");
    let a = api.create(&rules, &json!({"type": "accept"}));
    let b = api.create(&rules, &json!({"type": "drop", "position": 2}));
    let j =
        api.create(&rules, &json!({"type": "jump", "jumpChainId": target["id"], "position": 2}));
    assert_eq!(j["jumpChainName"], "target");
    let order: Vec<Value> =
        api.ok(&rules).as_array().expect("list").iter().map(|r| r["id"].clone()).collect();
    assert_eq!(order, vec![a["id"].clone(), j["id"].clone(), b["id"].clone()]);
    assert_eq!(api.ok(&s(&b, "uri"))["position"], 3);
    // Position past the end is 400 naming position; nothing is added.
    assert_eq!(
        api.post(&rules, &json!({"type": "accept", "position": 5})).expect(400).field(),
        Some("position")
    );
    assert_eq!(api.count(&rules), 3);
    // The jump target cannot go while the jump exists.
    api.delete(&s(&target, "uri")).expect(409);
    api.delete(&s(&j, "uri")).expect(204);
    assert_eq!(api.ok(&s(&b, "uri"))["position"], 2);
    api.delete(&s(&target, "uri")).expect(204);
    // Chain's ruleIds is read-only on PUT.
    let mut dto = api.ok(&s(&c, "uri"));
    dto["ruleIds"] = json!([]);
    api.put(&s(&c, "uri"), &dto).expect(204);
    assert_eq!(api.count(&rules), 2);
}

#[test]
fn hosts_interfaces_bindings_and_tunnel_zones() {
    let (c, api) = setup();
    let h = host(&api, "host-a");
    let hu = format!("/hosts/{h}");
    let hd = api.ok(&hu);
    assert_eq!(hd["alive"], false);
    assert_eq!(hd["floodingProxyWeight"], 1);
    api.create(
        &format!("{hu}/interfaces"),
        &json!({"name": "veth0", "mtu": 1500, "mac": "02:00:00:00:00:09"}),
    );
    let ifs = api.ok(&s(&hd, "interfaces"));
    assert_eq!(ifs[0]["name"], "veth0");
    // PUT weights.
    let mut dto = hd.clone();
    dto["floodingProxyWeight"] = json!("5");
    api.put(&hu, &dto).expect(204);
    assert_eq!(api.ok(&hu)["floodingProxyWeight"], 5);
    // Bind a port.
    let b = api.create("/bridges", &json!({"name": "b"}));
    let p = api.create(&s(&b, "ports"), &json!({}));
    let r = api
        .post(&s(&hd, "ports"), &json!({"portId": p["id"], "interfaceName": "veth0"}))
        .expect(201);
    let loc = r.location.clone().expect("location");
    assert_eq!(loc, format!("{}/hosts/{h}/ports/{}", api.base, s(&p, "id")));
    let hip = api.ok(&loc);
    assert_eq!(hip["interfaceName"], "veth0");
    assert_eq!(api.count(&s(&hd, "ports")), 1);
    let pd = api.ok(&s(&p, "uri"));
    assert_eq!(pd["hostId"], json!(h));
    assert_eq!(s(&pd, "hostInterfacePort"), loc);
    // Same interface, another port: 409.
    let p2 = api.create(&s(&b, "ports"), &json!({}));
    assert_eq!(
        api.post(&s(&hd, "ports"), &json!({"portId": p2["id"], "interfaceName": "veth0"})).status,
        409
    );
    // PUT of the full bound port DTO keeps the binding.
    api.put(&s(&p, "uri"), &pd).expect(204);
    // Runtime state shows through: active port, alive host.
    let store = c.cluster().store.clone();
    let (hid, pid) = (h.clone(), s(&p, "id"));
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt").block_on(
        async move {
            store
                .put(format!("/midonet/v1/state/hosts/{hid}/alive").as_bytes(), b"true", None)
                .await
                .expect("put");
            store
                .put(format!("/midonet/v1/state/ports/{pid}/active").as_bytes(), b"true", None)
                .await
                .expect("put");
        },
    );
    assert_eq!(api.ok(&hu)["alive"], true);
    assert_eq!(api.ok(&hu).get("datapath"), None, "an agent that did not say");
    assert_eq!(api.ok(&s(&p, "uri"))["active"], true);
    // An agent's session says which datapath it runs.
    let (store, hid) = (c.cluster().store.clone(), h.clone());
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt").block_on(
        async move {
            let alive = midonet_proto::Liveness {
                datapath: "userspace".into(),
                ..midonet_proto::Liveness::of(hid.clone(), 7)
            };
            let value = serde_json::to_vec(&alive).expect("json");
            let key = format!("/midonet/v1/state/hosts/{hid}/alive");
            store.put(key.as_bytes(), &value, None).await.expect("put");
        },
    );
    let dto = api.ok(&hu);
    assert_eq!(dto["datapath"], "userspace");
    // A client's GET, change, PUT round trip carries it back unharmed.
    let mut body = dto.clone();
    body["floodingProxyWeight"] = json!(3);
    api.put(&hu, &body).expect(204);
    assert_eq!(api.ok(&hu)["floodingProxyWeight"], 3);
    let listed = api.ok("/hosts");
    let listed = listed.as_array().expect("host list");
    assert!(listed.iter().any(|x| x["id"] == h && x["datapath"] == "userspace"), "{listed:?}");
    api.delete(&hu).expect(409);
    // Tunnel zones.
    let tz = api.create("/tunnel_zones", &json!({"name": "tz"}));
    let m = api.create(&s(&tz, "hosts"), &json!({"hostId": h, "ipAddress": "192.168.0.1"}));
    assert_eq!(api.ok(&s(&m, "uri"))["ipAddress"], "192.168.0.1");
    assert_eq!(
        api.post(&s(&tz, "hosts"), &json!({"hostId": h, "ipAddress": "192.168.0.2"})).status,
        409
    );
    assert_eq!(
        api.post(&s(&tz, "hosts"), &json!({"hostId": uuid_str(), "ipAddress": "192.168.0.2"}))
            .status,
        404
    );
    assert_eq!(api.count(&s(&tz, "hosts")), 1);
    // Unbind; delete zone takes memberships.
    api.delete(&loc).expect(204);
    api.get(&loc).expect(404);
    assert!(api.ok(&s(&p, "uri"))["hostId"].is_null());
    api.delete(&s(&tz, "uri")).expect(204);
    api.get(&s(&m, "uri")).expect(404);
}

#[test]
fn host_delete_unbinds_and_drops_memberships() {
    let (_c, api) = setup();
    let h = host(&api, "h");
    let b = api.create("/bridges", &json!({}));
    let p = api.create(&s(&b, "ports"), &json!({}));
    api.post(&format!("/hosts/{h}/ports"), &json!({"portId": p["id"], "interfaceName": "tap1"}))
        .expect(201);
    let tz = api.create("/tunnel_zones", &json!({"name": "tz"}));
    api.create(&s(&tz, "hosts"), &json!({"hostId": h, "ipAddress": "10.1.1.1"}));
    api.delete(&format!("/hosts/{h}")).expect(204);
    assert!(api.ok(&s(&p, "uri"))["hostId"].is_null());
    assert_eq!(api.count(&s(&tz, "hosts")), 0);
}

#[test]
fn dhcp_subnets_and_hosts() {
    let (_c, api) = setup();
    let b = api.create("/bridges", &json!({"name": "b"}));
    let dhcp = s(&b, "dhcpSubnets");
    let sub = api.create(&dhcp, &json!({"subnetPrefix": "10.0.0.0", "subnetLength": "24", "defaultGateway": "10.0.0.1", "dnsServerAddrs": ["8.8.8.8"]}));
    assert_eq!(s(&sub, "uri"), format!("{dhcp}/10.0.0.0_24"));
    assert_eq!(
        api.post(&dhcp, &json!({"subnetPrefix": "10.0.0.0", "subnetLength": 24})).status,
        409
    );
    let mut dto = api.ok(&s(&sub, "uri"));
    dto["interfaceMTU"] = json!(1400);
    api.put(&s(&sub, "uri"), &dto).expect(204);
    assert_eq!(api.ok(&s(&sub, "uri"))["interfaceMTU"], 1400);
    let hosts = s(&sub, "hosts");
    let h = api.create(
        &hosts,
        &json!({"macAddr": "02:00:00:00:00:01", "ipAddr": "10.0.0.5", "name": "vm1"}),
    );
    assert_eq!(s(&h, "uri"), format!("{hosts}/02-00-00-00-00-01"));
    assert_eq!(
        api.post(&hosts, &json!({"macAddr": "02:00:00:00:00:02", "ipAddr": "10.9.0.5"}))
            .expect(400)
            .field(),
        Some("ipAddr")
    );
    let mut hd = api.ok(&s(&h, "uri"));
    hd["name"] = json!("vm1b");
    api.put(&s(&h, "uri"), &hd).expect(204);
    assert_eq!(api.ok(&s(&h, "uri"))["name"], "vm1b");
    assert_eq!(api.count(&hosts), 1);
    api.delete(&s(&h, "uri")).expect(204);
    api.create(&hosts, &json!({"macAddr": "02:00:00:00:00:03", "ipAddr": "10.0.0.6"}));
    api.delete(&s(&sub, "uri")).expect(204);
    assert_eq!(api.count(&dhcp), 0);
    api.get(&hosts).expect(404);
}

#[test]
fn mac_and_arp_tables() {
    let (_c, api) = setup();
    let b = api.create("/bridges", &json!({"name": "b"}));
    let p = api.create(&s(&b, "ports"), &json!({}));
    let mt = s(&b, "macTable");
    let e = api.create(&mt, &json!({"macAddr": "02:00:00:00:00:01", "portId": p["id"]}));
    assert_eq!(s(&e, "uri"), format!("{mt}/02-00-00-00-00-01_{}", s(&p, "id")));
    assert_eq!(
        api.post(&mt, &json!({"macAddr": "02:00:00:00:00:01", "portId": p["id"]})).status,
        409
    );
    let vt = s(&b, "vlanMacTableTemplate").replace("{vlanId}", "7");
    let ve = api.create(&vt, &json!({"macAddr": "02:00:00:00:00:01", "portId": p["id"]}));
    assert_eq!(ve["vlanId"], 7);
    assert_eq!(api.count(&mt), 2);
    assert_eq!(api.count(&vt), 1);
    api.ok(&s(&ve, "uri"));
    // Port of another bridge: 400 portId.
    let b2 = api.create("/bridges", &json!({}));
    let p2 = api.create(&s(&b2, "ports"), &json!({}));
    assert_eq!(
        api.post(&mt, &json!({"macAddr": "02:00:00:00:00:09", "portId": p2["id"]}))
            .expect(400)
            .field(),
        Some("portId")
    );
    api.delete(&s(&e, "uri")).expect(204);
    api.get(&s(&e, "uri")).expect(404);
    // Deleting the port drops its MAC entries.
    api.delete(&s(&p, "uri")).expect(204);
    assert_eq!(api.count(&mt), 0);
    // ARP.
    let at = s(&b, "arpTable");
    let a = api.create(&at, &json!({"ip": "10.0.0.9", "mac": "02:00:00:00:00:aa"}));
    assert_eq!(s(&a, "uri"), format!("{at}/10.0.0.9_02-00-00-00-00-aa"));
    assert_eq!(api.ok(&s(&a, "uri"))["mac"], "02:00:00:00:00:aa");
    assert_eq!(api.post(&at, &json!({"ip": "10.0.0.9", "mac": "02:00:00:00:00:bb"})).status, 409);
    assert_eq!(
        api.post(&at, &json!({"ip": "10.0.0.10", "mac": "zz"})).expect(400).field(),
        Some("mac")
    );
    api.delete(&s(&a, "uri")).expect(204);
    assert_eq!(api.count(&at), 0);
}

#[test]
fn port_groups_and_ip_addr_groups() {
    let (_c, api) = setup();
    let b = api.create("/bridges", &json!({}));
    let p = api.create(&s(&b, "ports"), &json!({}));
    let pg = api.create("/port_groups", &json!({"name": "pg"}));
    let m = api.create(&s(&pg, "ports"), &json!({"portId": p["id"]}));
    assert_eq!(s(&m, "uri"), format!("{}/{}", s(&pg, "ports"), s(&p, "id")));
    assert_eq!(api.post(&s(&pg, "ports"), &json!({"portId": p["id"]})).status, 409);
    assert_eq!(api.ok(&s(&p, "uri"))["portGroupIds"], json!([pg["id"]]));
    assert_eq!(api.count(&s(&p, "portGroups")), 1);
    api.delete(&s(&m, "uri")).expect(204);
    assert_eq!(api.count(&s(&pg, "ports")), 0);
    let p2 = api.create(&s(&b, "ports"), &json!({}));
    for port in [&p, &p2] {
        api.create(&s(&pg, "ports"), &json!({"portId": port["id"]}));
    }
    // In use by a rule: 409, and nothing changes.
    let c = api.create("/chains", &json!({}));
    let rule = api.create(&s(&c, "rules"), &json!({"type": "drop", "inPortGroup": pg["id"]}));
    api.delete(&s(&pg, "uri")).expect(409);
    assert_eq!(api.count(&s(&pg, "ports")), 2);
    api.delete(&s(&rule, "uri")).expect(204);
    // Members do not hold it (MidoNet's CLEAR binding): the delete takes
    // the group out of their `portGroupIds`.
    api.delete(&s(&pg, "uri")).expect(204);
    for port in [&p, &p2] {
        assert_eq!(api.ok(&s(port, "uri"))["portGroupIds"], json!([]), "{port}");
        assert_eq!(api.count(&s(port, "portGroups")), 0);
    }
    // IP address groups, with versions.
    let g = api.create("/ip_addr_groups", &json!({"name": "sg"}));
    // The link has MidoNet's name, `addrs` (midonetclient reads it).
    let addrs = s(&g, "addrs");
    assert_eq!(addrs, format!("{}/ip_addrs", s(&g, "uri")));
    assert!(g.get("ipAddrs").is_none(), "one name for the link: {g}");
    let a4 = api.create(&addrs, &json!({"addr": "10.0.0.1"}));
    assert_eq!(a4["version"], 4);
    let v6 = format!("{}/versions/6/ip_addrs", s(&g, "uri"));
    let a6 = api.create(&v6, &json!({"addr": "2001:db8::1"}));
    assert_eq!(a6["version"], 6);
    assert_eq!(api.post(&v6, &json!({"addr": "10.0.0.2"})).expect(400).field(), Some("addr"));
    assert_eq!(api.count(&addrs), 2);
    assert_eq!(api.count(&v6), 1);
    api.ok(&s(&a6, "uri"));
    assert_eq!(api.post(&addrs, &json!({"addr": "10.0.0.1"})).status, 409);
    api.delete(&s(&a4, "uri")).expect(204);
    let rule = api.create(&s(&c, "rules"), &json!({"type": "drop", "ipAddrGroupSrc": g["id"]}));
    api.delete(&s(&g, "uri")).expect(409);
    api.delete(&s(&rule, "uri")).expect(204);
    api.delete(&s(&g, "uri")).expect(204);
    api.get(&s(&a6, "uri")).expect(404);
}

#[test]
fn load_balancers_pools_members_vips_monitors() {
    let (_c, api) = setup();
    let r = api.create("/routers", &json!({"name": "r"}));
    let lb = api.create("/load_balancers", &json!({"routerId": r["id"]}));
    let hm = api.create("/health_monitors", &json!({"type": "TCP"}));
    let pool = api.create(&s(&lb, "pools"), &json!({"healthMonitorId": hm["id"]}));
    assert_eq!(pool["loadBalancerId"], lb["id"]);
    let mem = api
        .create(&s(&pool, "poolMembers"), &json!({"address": "10.0.0.10", "protocolPort": "80"}));
    assert_eq!(mem["poolId"], pool["id"]);
    let mem2 = api.create(
        "/pool_members",
        &json!({"poolId": pool["id"], "address": "10.0.0.11", "protocolPort": 80, "weight": 2}),
    );
    assert_eq!(api.count(&s(&pool, "poolMembers")), 2);
    let vip = api.create(&s(&pool, "vips"), &json!({"address": "192.0.2.10", "protocolPort": 80}));
    assert_eq!(vip["loadBalancerId"], lb["id"]);
    assert_eq!(api.count(&s(&lb, "vips")), 1);
    assert_eq!(api.count("/vips"), 1);
    // Referenced: 409s.
    api.delete(&s(&lb, "uri")).expect(409);
    api.delete(&s(&pool, "uri")).expect(409);
    api.delete(&s(&hm, "uri")).expect(409);
    // Another LB's pool for a VIP: 400 poolId.
    let lb2 = api.create("/load_balancers", &json!({}));
    assert_eq!(api.post("/vips", &json!({"loadBalancerId": lb2["id"], "poolId": pool["id"], "address": "192.0.2.11", "protocolPort": 80})).expect(400).field(), Some("poolId"));
    // A VIP on the router's own port address: 400 address.
    api.create(
        &s(&r, "ports"),
        &json!({"portAddress": "192.0.2.1", "networkAddress": "192.0.2.0", "networkLength": 24}),
    );
    let e = api
        .post(&s(&pool, "vips"), &json!({"address": "192.0.2.1", "protocolPort": 80}))
        .expect(400);
    assert_eq!(e.field(), Some("address"));
    // Monitors: HTTP with its fields checked, PING, and unknown types.
    let http = api.create(
        "/health_monitors",
        &json!({"type": "HTTP", "urlPath": "/health", "expectedCodes": "200-204"}),
    );
    assert_eq!(http["httpMethod"], "GET");
    let e =
        api.post("/health_monitors", &json!({"type": "HTTP", "expectedCodes": "2xx"})).expect(400);
    assert_eq!(e.field(), Some("expectedCodes"));
    let e = api.post("/health_monitors", &json!({"type": "HTTP", "urlPath": "health"})).expect(400);
    assert_eq!(e.field(), Some("urlPath"));
    let e = api.post("/health_monitors", &json!({"type": "UDP"})).expect(400);
    assert_eq!(e.field(), Some("type"));
    let e = api.post("/health_monitors", &json!({"type": "PING", "maxRetries": 0})).expect(400);
    assert_eq!(e.field(), Some("maxRetries"));
    api.delete(&s(&http, "uri")).expect(204);
    let mut md = api.ok(&s(&mem2, "uri"));
    md["weight"] = json!(5);
    api.put(&s(&mem2, "uri"), &md).expect(204);
    assert_eq!(api.ok(&s(&mem2, "uri"))["weight"], 5);
    api.delete(&s(&vip, "uri")).expect(204);
    api.delete(&s(&pool, "uri")).expect(204);
    api.get(&s(&mem, "uri")).expect(404);
    api.delete(&s(&hm, "uri")).expect(204);
    // A health-check port left by a checker that died goes with the load
    // balancer (with its route).
    let lb_id: midonet_model::LoadBalancerId =
        lb["id"].as_str().expect("id").parse().expect("uuid");
    let hc = midonet_model::HealthCheckPort::of(lb_id);
    let hcp = api.create(
        &s(&r, "ports"),
        &json!({"id": hc.port_id, "portAddress": hc.router_ip, "networkAddress": hc.network, "networkLength": 30}),
    );
    assert_eq!(hcp["id"], json!(hc.port_id));
    api.delete(&s(&lb, "uri")).expect(204);
    api.get(&s(&hcp, "uri")).expect(404);
}

#[test]
fn mirrors_and_tenants_and_system_state() {
    let (_c, api) = setup();
    let b = api.create("/bridges", &json!({"tenantId": "acme"}));
    let p = api.create(&s(&b, "ports"), &json!({}));
    let m = api.create("/mirrors", &json!({"toPortId": p["id"], "conditions": [{"nwProto": "6"}]}));
    assert_eq!(s(&m, "toPort"), s(&p, "uri"));
    let mut bd = api.ok(&s(&b, "uri"));
    let m2 = api.create("/mirrors", &json!({"toPortId": p["id"]}));
    bd["inboundMirrorIds"] = json!([m["id"], m2["id"]]);
    bd["outboundMirrorIds"] = json!([m["id"]]);
    api.put(&s(&b, "uri"), &bd).expect(204);
    let q = api.create(&s(&b, "ports"), &json!({}));
    let mut qd = api.ok(&s(&q, "uri"));
    qd["postInFilterMirrorIds"] = json!([m["id"]]);
    api.put(&s(&q, "uri"), &qd).expect(204);
    // A mirror target port cannot be deleted while the mirror exists.
    api.delete(&s(&p, "uri")).expect(409);
    // Deleting a mirror takes it out of every list that names it (MidoNet
    // clears the binding) and leaves the other mirrors in place.
    api.delete(&s(&m, "uri")).expect(204);
    let bd = api.ok(&s(&b, "uri"));
    assert_eq!(bd["inboundMirrorIds"], json!([m2["id"]]), "{bd}");
    assert_eq!(bd["outboundMirrorIds"], json!([]), "{bd}");
    assert_eq!(api.ok(&s(&q, "uri"))["postInFilterMirrorIds"], json!([]));
    api.delete(&s(&m2, "uri")).expect(204);
    assert_eq!(api.ok(&s(&b, "uri"))["inboundMirrorIds"], json!([]));
    // Tenants derived from objects.
    let ts = api.ok("/tenants");
    assert!(ts.as_array().expect("list").iter().any(|t| t["id"] == "acme"), "{ts}");
    let t = api.ok("/tenants/acme");
    assert_eq!(api.count(&s(&t, "bridges")), 1);
    api.get("/tenants/nope").expect(404);
    let st = api.ok("/system_state");
    assert_eq!(st["state"], "ACTIVE");
    assert!(st["information"].is_null());
}

#[test]
fn root_document_has_every_collection_and_template() {
    let (_c, api) = setup();
    let root = api.ok("");
    assert_eq!(api.ok("/"), root);
    for k in [
        "bridges",
        "routers",
        "ports",
        "chains",
        "hosts",
        "tunnelZones",
        "portGroups",
        "ipAddrGroups",
        "loadBalancers",
        "pools",
        "poolMembers",
        "vips",
        "healthMonitors",
        "mirrors",
        "tenants",
        "systemState",
        "traceRequests",
    ] {
        let v = root[k].as_str().unwrap_or_else(|| panic!("root lacks {k}"));
        assert!(v.starts_with("http://"), "{k}: {v}");
    }
    for t in [
        "bridgeTemplate",
        "routerTemplate",
        "portTemplate",
        "chainTemplate",
        "ruleTemplate",
        "routeTemplate",
        "hostTemplate",
        "tunnelZoneTemplate",
        "portGroupTemplate",
        "ipAddrGroupTemplate",
        "loadBalancerTemplate",
        "poolTemplate",
        "poolMemberTemplate",
        "vipTemplate",
        "healthMonitorTemplate",
        "mirrorTemplate",
        "tenantTemplate",
    ] {
        assert!(
            root[t].as_str().unwrap_or_else(|| panic!("root lacks {t}")).ends_with("/{id}"),
            "{t}"
        );
    }
    assert_eq!(root["version"], "v5.0");
    // Every collection answers a list.
    for k in [
        "bridges",
        "routers",
        "ports",
        "chains",
        "hosts",
        "tunnelZones",
        "portGroups",
        "ipAddrGroups",
        "loadBalancers",
        "pools",
        "poolMembers",
        "vips",
        "healthMonitors",
        "mirrors",
        "tenants",
    ] {
        assert!(api.ok(root[k].as_str().expect("uri")).is_array(), "{k}");
    }
}
