//! The Neutron v2.0 API at the HTTP level: every resource, filters,
//! fields, paging and sorting, error bodies and status codes, project
//! isolation, and what each write translates to in the MidoNet model.

mod common;

use common::{Api, Resp};
use midonet_cluster::testing::TestCluster;
use serde_json::{json, Value};

struct N {
    c: TestCluster,
    admin: Api,
    alice: Api,
    bob: Api,
    /// The MidoNet API, as admin.
    mido: Api,
}

fn start() -> N {
    with(TestCluster::start("memory:", true))
}

/// The clients of a running cluster.
fn with(c: TestCluster) -> N {
    let base = c.url().replace("/midonet-api", "/neutron");
    let admin = Api::new(&base, Some(c.admin_token()));
    let alice = Api::new(&base, Some(c.token_for("alice")));
    let bob = Api::new(&base, Some(c.token_for("bob")));
    let mido = Api::new(&c.url(), Some(c.admin_token()));
    N { c, admin, alice, bob, mido }
}

#[track_caller]
fn neutron_error(r: &Resp, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["NeutronError"]["type"], kind, "{}", r.text);
    assert!(r.body["NeutronError"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(r.body["NeutronError"]["detail"], "");
}

fn id(v: &Value, what: &str) -> String {
    v[what]["id"].as_str().unwrap_or_else(|| panic!("{what} has an id: {v}")).to_string()
}

/// A network with one subnet, as `api`'s project.
fn net(api: &Api, name: &str, cidr: &str) -> (String, String) {
    let n = api.post("/v2.0/networks", &json!({"network": {"name": name}})).expect(201).body;
    let nid = id(&n, "network");
    let s = api
        .post(
            "/v2.0/subnets",
            &json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": cidr, "name": name}}),
        )
        .expect(201)
        .body;
    (nid, id(&s, "subnet"))
}

/// The MidoNet rules of security group `sgid`'s ingress chain.
fn ingress_rules(n: &N, sgid: &str) -> Value {
    let chains = n.mido.ok("/chains");
    let ing = chains
        .as_array()
        .expect("l")
        .iter()
        .find(|c| c["name"] == format!("OS_SG_{sgid}_INGRESS").as_str())
        .expect("ingress chain")["id"]
        .as_str()
        .expect("id")
        .to_string();
    n.mido.ok(&format!("/chains/{ing}/rules"))
}

#[test]
fn discovery_documents_and_extensions() {
    let n = start();
    let v = n.admin.get("/").expect(200).body;
    assert_eq!(v["versions"][0]["id"], "v2.0");
    assert!(v["versions"][0]["links"][0]["href"]
        .as_str()
        .expect("href")
        .ends_with("/neutron/v2.0/"));
    let ext = n.admin.get("/v2.0/extensions").expect(200).body;
    let aliases: Vec<&str> = ext["extensions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["alias"].as_str())
        .collect();
    for a in ["router", "external-net", "security-group", "port-security", "binding", "quotas"] {
        assert!(aliases.contains(&a), "{a} in {aliases:?}");
    }
    let one = n.admin.get("/v2.0/extensions/router").expect(200).body;
    assert_eq!(one["extension"]["alias"], "router");
    for k in ["name", "description", "updated", "links"] {
        assert!(one["extension"].get(k).is_some(), "{k}");
    }
    neutron_error(
        &n.admin.get("/v2.0/extensions/tag-ports-during-bulk-creation"),
        404,
        "ExtensionNotFound",
    );
    neutron_error(&n.admin.get("/v2.0/nonsense"), 404, "HTTPNotFound");
    // No token: 401 in Neutron's error shape, except for the version
    // document, which clients read before they have one.
    let anon = Api::new(&n.admin.base, None);
    neutron_error(&anon.get("/v2.0/networks"), 401, "HTTPUnauthorized");
    assert_eq!(anon.get("/").expect(200).body["versions"][0]["id"], "v2.0");
    assert!(aliases.contains(&"ip-substring-filtering"), "{aliases:?}");
    let sp = n.bob.get("/v2.0/service-providers").expect(200).body;
    assert_eq!(sp["service_providers"][0]["service_type"], "L3_ROUTER_NAT", "{sp}");
}

#[test]
fn agents_are_the_hosts_and_only_admins_see_them() {
    let n = start();
    let host = json!({"id": "5e1f0c2a-1111-4222-8333-444455556666", "name": "compute-1",
                      "addresses": ["10.0.0.7"]});
    n.mido.post("/hosts", &host).expect(201);
    let l = n.admin.get("/v2.0/agents").expect(200).body;
    let agents = l["agents"].as_array().expect("list");
    assert_eq!(agents.len(), 1, "{l}");
    assert_eq!(agents[0]["host"], "compute-1");
    assert_eq!(agents[0]["agent_type"], "MidoNet Agent");
    assert_eq!(agents[0]["alive"], false, "no agent session");
    let one = n.admin.get("/v2.0/agents/5e1f0c2a-1111-4222-8333-444455556666").expect(200).body;
    assert_eq!(one["agent"]["binary"], "midonet-agent");
    assert_eq!(one["agent"]["configurations"].get("datapath"), None);
    // The agent's session: alive, and the datapath it registered with.
    let alive = midonet_proto::Liveness {
        datapath: "ebpf".into(),
        ..midonet_proto::Liveness::of("5e1f0c2a-1111-4222-8333-444455556666", 7)
    };
    let store = n.c.cluster().store.clone();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(store.put(
            b"/midonet/v1/state/hosts/5e1f0c2a-1111-4222-8333-444455556666/alive",
            &serde_json::to_vec(&alive).expect("json"),
            None,
        ))
        .expect("put");
    let one = n.admin.get("/v2.0/agents/5e1f0c2a-1111-4222-8333-444455556666").expect(200).body;
    assert_eq!(one["agent"]["alive"], true);
    assert_eq!(one["agent"]["configurations"]["datapath"], "ebpf");
    assert_eq!(one["agent"]["configurations"]["addresses"][0], "10.0.0.7");
    // A member sees none (Neutron's policy), and no host by id.
    assert!(n.bob.get("/v2.0/agents").expect(200).body["agents"]
        .as_array()
        .expect("list")
        .is_empty());
    neutron_error(
        &n.bob.get("/v2.0/agents/5e1f0c2a-1111-4222-8333-444455556666"),
        404,
        "AgentNotFound",
    );
}

#[test]
fn networks_subnets_and_ports_translate_to_bridges_dhcp_and_ports() {
    let n = start();
    let (nid, sid) = net(&n.alice, "n1", "10.0.0.0/24");
    let s = n.alice.get(&format!("/v2.0/subnets/{sid}")).expect(200).body;
    assert_eq!(s["subnet"]["gateway_ip"], "10.0.0.1");
    assert_eq!(
        s["subnet"]["allocation_pools"],
        json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
    );
    assert_eq!(s["subnet"]["enable_dhcp"], true);
    assert_eq!(s["subnet"]["project_id"], "tenant-a");
    let netv = n.alice.get(&format!("/v2.0/networks/{nid}")).expect(200).body;
    assert_eq!(netv["network"]["subnets"], json!([sid]));
    assert_eq!(netv["network"]["mtu"], 1450);
    // The bridge has the network's id and a DHCP subnet.
    let b = n.mido.ok(&format!("/bridges/{nid}"));
    assert_eq!(b["name"], "n1");
    assert_eq!(b["tenantId"], "tenant-a");
    let dhcp = n.mido.ok(&format!("/bridges/{nid}/dhcp"));
    assert_eq!(dhcp[0]["subnetPrefix"], "10.0.0.0");
    assert_eq!(dhcp[0]["defaultGateway"], "10.0.0.1");

    // A port gets a free address of the pool (at random among the first
    // free ones, as Neutron's IPAM), a MAC, the default group.
    let p = n
        .alice
        .post("/v2.0/ports", &json!({"port": {"network_id": nid, "name": "p1"}}))
        .expect(201)
        .body;
    let pid = id(&p, "port");
    assert_eq!(p["port"]["fixed_ips"][0]["subnet_id"], sid.as_str());
    let ip1 = p["port"]["fixed_ips"][0]["ip_address"].as_str().expect("address").to_string();
    let last: u8 =
        ip1.strip_prefix("10.0.0.").and_then(|l| l.parse().ok()).expect("in 10.0.0.0/24");
    assert!((2..=254).contains(&last), "{ip1} is in the allocation pool");
    assert!(p["port"]["mac_address"].as_str().expect("mac").starts_with("fa:16:3e:"));
    assert_eq!(p["port"]["status"], "DOWN");
    let sgs = p["port"]["security_groups"].as_array().expect("groups").clone();
    assert_eq!(sgs.len(), 1);
    let sg = n
        .alice
        .get(&format!("/v2.0/security-groups/{}", sgs[0].as_str().expect("id")))
        .expect(200)
        .body;
    assert_eq!(sg["security_group"]["name"], "default");
    assert_eq!(sg["security_group"]["security_group_rules"].as_array().expect("rules").len(), 4);
    let mp = n.mido.ok(&format!("/ports/{pid}"));
    assert_eq!(mp["deviceId"], nid.as_str());
    assert!(mp["tunnelKey"].as_u64().expect("key") >= 16);
    let inbound = mp["inboundFilterId"].as_str().expect("port security gives chains");
    let rules = n.mido.ok(&format!("/chains/{inbound}/rules"));
    let types: Vec<&str> =
        rules.as_array().expect("rules").iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(
        types,
        vec!["jump", "accept", "jump", "drop"],
        "anti-spoof, return flows, group, drop"
    );
    assert_eq!(rules[1]["matchReturnFlow"], true);
    // The MAC and ARP tables are seeded, a DHCP host entry made.
    let macs = n.mido.ok(&format!("/bridges/{nid}/mac_table"));
    assert!(macs.as_array().expect("macs").iter().any(|m| m["portId"] == pid.as_str()), "{macs}");
    let hosts = n.mido.ok(&format!("/bridges/{nid}/dhcp/10.0.0.0_24/hosts"));
    assert_eq!(hosts[0]["ipAddr"], ip1.as_str());

    // Explicit addresses: taken, outside, the gateway.
    let fixed = |ip: &str| json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": ip}]}});
    let ip2 = if ip1 == "10.0.0.50" { "10.0.0.51" } else { "10.0.0.50" };
    let p2 = n.alice.post("/v2.0/ports", &fixed(ip2)).expect(201).body;
    assert_eq!(p2["port"]["fixed_ips"][0]["ip_address"], ip2);
    neutron_error(&n.alice.post("/v2.0/ports", &fixed(&ip1)), 409, "IpAddressAlreadyAllocated");
    neutron_error(&n.alice.post("/v2.0/ports", &fixed(ip2)), 409, "IpAddressAlreadyAllocated");
    neutron_error(&n.alice.post("/v2.0/ports", &fixed("10.0.1.5")), 400, "InvalidInput");
    neutron_error(
        &n.alice.post("/v2.0/ports", &fixed("10.0.0.1")),
        409,
        "IpAddressAlreadyAllocated",
    );
    // Overlapping subnet, subnet and network in use.
    let over = json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.0.0.128/25"}});
    neutron_error(&n.alice.post("/v2.0/subnets", &over), 400, "InvalidInput");
    neutron_error(&n.alice.delete(&format!("/v2.0/subnets/{sid}")), 409, "SubnetInUse");
    neutron_error(&n.alice.delete(&format!("/v2.0/networks/{nid}")), 409, "NetworkInUse");
    // The MidoNet API may not change what Neutron owns.
    let r = n.mido.put(&format!("/bridges/{nid}"), &json!({"name": "renamed"})).expect(409);
    assert!(r.text.contains("Neutron"), "{}", r.text);
    n.mido.delete(&format!("/ports/{pid}")).expect(409);

    // Port update: new address, groups cleared with port security off.
    let up = json!({"port": {"fixed_ips": [{"subnet_id": sid, "ip_address": "10.0.0.77"}]}});
    let p = n.alice.put(&format!("/v2.0/ports/{pid}"), &up).expect(200).body;
    assert_eq!(p["port"]["fixed_ips"][0]["ip_address"], "10.0.0.77");
    let off = json!({"port": {"port_security_enabled": false}});
    neutron_error(
        &n.alice.put(&format!("/v2.0/ports/{pid}"), &off),
        409,
        "PortSecurityAndIPRequiredForSecurityGroups",
    );
    let off = json!({"port": {"port_security_enabled": false, "security_groups": []}});
    n.alice.put(&format!("/v2.0/ports/{pid}"), &off).expect(200);
    let mp = n.mido.ok(&format!("/ports/{pid}"));
    assert!(mp["inboundFilterId"].is_null(), "no chains without port security: {mp}");
    let chains_left = n.mido.ok("/chains");
    assert!(
        !chains_left
            .as_array()
            .expect("chains")
            .iter()
            .any(|c| c["name"].as_str().is_some_and(|x| x.contains(&pid))),
        "the port's chains went with port security"
    );

    // Deleting everything removes every MidoNet object it made.
    for p in [&pid, &id(&p2, "port")] {
        n.alice.delete(&format!("/v2.0/ports/{p}")).expect(204);
    }
    n.mido.get(&format!("/ports/{pid}")).expect(404);
    n.alice.delete(&format!("/v2.0/subnets/{sid}")).expect(204);
    n.alice.delete(&format!("/v2.0/networks/{nid}")).expect(204);
    n.mido.get(&format!("/bridges/{nid}")).expect(404);
    neutron_error(&n.alice.get(&format!("/v2.0/networks/{nid}")), 404, "NetworkNotFound");
    drop(n.c);
}

#[test]
fn lists_filter_select_fields_sort_and_page() {
    let n = start();
    let body =
        json!({"networks": (0..5).map(|i| json!({"name": format!("net{i}")})).collect::<Vec<_>>()});
    let created = n.admin.post("/v2.0/networks", &body).expect(201).body;
    assert_eq!(created["networks"].as_array().expect("bulk").len(), 5);
    let one = n.admin.get("/v2.0/networks?name=net3").expect(200).body;
    assert_eq!(one["networks"].as_array().expect("list").len(), 1);
    assert_eq!(one["networks"][0]["name"], "net3");
    // fields: only those come back.
    let f = n.admin.get("/v2.0/networks?fields=id&fields=name").expect(200).body;
    let keys: Vec<&String> = f["networks"][0].as_object().expect("obj").keys().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    // sort desc by name.
    let s = n.admin.get("/v2.0/networks?sort_key=name&sort_dir=desc").expect(200).body;
    let names: Vec<&str> =
        s["networks"].as_array().expect("l").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, vec!["net4", "net3", "net2", "net1", "net0"]);
    // limit + marker walk every item once, with next links.
    let mut seen = Vec::new();
    let mut url = "/v2.0/networks?limit=2&sort_key=name&sort_dir=asc".to_string();
    for _ in 0..5 {
        let page = n.admin.get(&url).expect(200).body;
        for v in page["networks"].as_array().expect("page") {
            seen.push(v["name"].as_str().expect("name").to_string());
        }
        let next = page["networks_links"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["rel"] == "next"))
            .and_then(|x| x["href"].as_str());
        match next {
            Some(h) => url = h.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, vec!["net0", "net1", "net2", "net3", "net4"]);
    neutron_error(
        &n.admin.get("/v2.0/networks?marker=4b825dc6-0000-4000-8000-000000000000&limit=1"),
        404,
        "MarkerNotFound",
    );
    neutron_error(
        &n.admin.get("/v2.0/networks?sort_key=name&sort_dir=sideways"),
        400,
        "HTTPBadRequest",
    );
    // Booleans filter case-insensitively (OSC sends `True`).
    n.admin
        .post("/v2.0/networks", &json!({"network": {"name": "ext", "router:external": true}}))
        .expect(201);
    let ext = n.admin.get("/v2.0/networks?router%3Aexternal=True").expect(200).body;
    assert_eq!(ext["networks"].as_array().expect("l").len(), 1);
    // A filter on an attribute networks do not have is ignored (Neutron
    // without filter-validation), not an empty list.
    let all = n.admin.get("/v2.0/networks?no_such_attribute=x").expect(200).body;
    assert_eq!(all["networks"].as_array().expect("l").len(), 6);
    // Ports by part of an address (ip-substring-filtering).
    let (nid, sid) = net(&n.admin, "subs", "10.9.0.0/24");
    for ip in ["10.9.0.17", "10.9.0.25"] {
        let p = json!({"port": {"network_id": nid, "fixed_ips": [{"subnet_id": sid, "ip_address": ip}]}});
        n.admin.post("/v2.0/ports", &p).expect(201);
    }
    let hit = n.admin.get("/v2.0/ports?fixed_ips=ip_address_substr%3D10.9.0.1").expect(200).body;
    let ips: Vec<&Value> = hit["ports"]
        .as_array()
        .expect("l")
        .iter()
        .map(|p| &p["fixed_ips"][0]["ip_address"])
        .collect();
    assert_eq!(ips, vec!["10.9.0.17"], "{hit}");
}

#[test]
fn bad_bodies_get_neutron_errors_and_write_nothing() {
    let n = start();
    let before = common::dump(&n.c).len();
    neutron_error(
        &n.admin.raw("POST", "/v2.0/networks", &[], Some("{nope")),
        400,
        "HTTPBadRequest",
    );
    neutron_error(
        &n.admin.post("/v2.0/networks", &json!({"network": {"bogus": 1}})),
        400,
        "HTTPBadRequest",
    );
    neutron_error(
        &n.admin.post("/v2.0/networks", &json!({"network": {"admin_state_up": "maybe"}})),
        400,
        "HTTPBadRequest",
    );
    neutron_error(&n.admin.post("/v2.0/networks", &json!({"net": {}})), 400, "HTTPBadRequest");
    neutron_error(
        &n.admin.post("/v2.0/subnets", &json!({"subnet": {"cidr": "10.0.0.0/24"}})),
        400,
        "HTTPBadRequest",
    );
    neutron_error(
        &n.admin
            .post("/v2.0/subnets", &json!({"subnet": {"network_id": "x", "cidr": "10.0.0.0/24"}})),
        400,
        "HTTPBadRequest",
    );
    neutron_error(
        &n.admin.post("/v2.0/subnets", &json!({"subnet": {"network_id": "4b825dc6-0000-4000-8000-000000000000", "cidr": "10.0.0.0/24"}})),
        404,
        "NetworkNotFound",
    );
    neutron_error(&n.admin.post("/v2.0/ports", &json!({"port": {}})), 400, "HTTPBadRequest");
    neutron_error(&n.admin.get("/v2.0/ports/not-a-uuid"), 404, "PortNotFound");
    // A bulk create with one bad item creates none.
    let bulk = json!({"networks": [{"name": "ok"}, {"name": "bad", "mtu": 5}]});
    neutron_error(&n.admin.post("/v2.0/networks", &bulk), 400, "HTTPBadRequest");
    assert_eq!(common::dump(&n.c).len(), before, "nothing written");
    let (nid, _) = net(&n.admin, "n", "10.9.0.0/24");
    let bad_cidr = json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.8.0.5/24"}});
    neutron_error(&n.admin.post("/v2.0/subnets", &bad_cidr), 400, "HTTPBadRequest");
    let v6 = json!({"subnet": {"network_id": nid, "ip_version": 6, "cidr": "2001:db8::/64"}});
    let s6 = n.admin.post("/v2.0/subnets", &v6).expect(201).body;
    assert_eq!(s6["subnet"]["gateway_ip"], "2001:db8::1");
    let mismatch = json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "2001:db9::/64"}});
    neutron_error(&n.admin.post("/v2.0/subnets", &mismatch), 400, "InvalidInput");
}

#[test]
fn projects_see_only_their_own_and_shared_objects() {
    let n = start();
    let (anet, _) = net(&n.alice, "a-private", "10.1.0.0/24");
    neutron_error(&n.bob.get(&format!("/v2.0/networks/{anet}")), 404, "NetworkNotFound");
    let bl = n.bob.get("/v2.0/networks").expect(200).body;
    assert!(bl["networks"].as_array().expect("l").is_empty(), "{bl}");
    assert_eq!(
        n.admin.get("/v2.0/networks").expect(200).body["networks"].as_array().expect("l").len(),
        1
    );
    // Bob cannot put a port on it (it does not exist for him), nor create
    // for another project, nor mark a network shared.
    neutron_error(
        &n.bob.post("/v2.0/ports", &json!({"port": {"network_id": anet}})),
        404,
        "NetworkNotFound",
    );
    neutron_error(
        &n.bob.post("/v2.0/networks", &json!({"network": {"project_id": "tenant-a"}})),
        403,
        "HTTPForbidden",
    );
    neutron_error(
        &n.bob.post("/v2.0/networks", &json!({"network": {"shared": true}})),
        403,
        "HTTPForbidden",
    );
    // A shared network (admin's) is visible to both, with its subnet.
    let shared = n
        .admin
        .post("/v2.0/networks", &json!({"network": {"name": "pub", "shared": true}}))
        .expect(201)
        .body;
    let sh = id(&shared, "network");
    let sub = json!({"subnet": {"network_id": sh, "ip_version": 4, "cidr": "10.5.0.0/24"}});
    n.admin.post("/v2.0/subnets", &sub).expect(201);
    assert_eq!(
        n.bob.get("/v2.0/subnets").expect(200).body["subnets"].as_array().expect("l").len(),
        1
    );
    // An external network is visible to all, its subnets only to their
    // owner (Neutron's get_subnet policy).
    let public = n
        .admin
        .post("/v2.0/networks", &json!({"network": {"name": "ext", "router:external": true}}))
        .expect(201)
        .body;
    let public = id(&public, "network");
    let esub = json!({"subnet": {"network_id": public, "ip_version": 4, "cidr": "172.24.9.0/24"}});
    let esub = id(&n.admin.post("/v2.0/subnets", &esub).expect(201).body, "subnet");
    n.bob.get(&format!("/v2.0/networks/{public}")).expect(200);
    neutron_error(&n.bob.get(&format!("/v2.0/subnets/{esub}")), 404, "SubnetNotFound");
    assert_eq!(
        n.bob.get("/v2.0/subnets").expect(200).body["subnets"].as_array().expect("l").len(),
        1,
        "the shared network's subnet only"
    );
    let bp = n.bob.post("/v2.0/ports", &json!({"port": {"network_id": sh}})).expect(201).body;
    assert_eq!(bp["port"]["project_id"], "tenant-b");
    neutron_error(&n.alice.get(&format!("/v2.0/ports/{}", id(&bp, "port"))), 404, "PortNotFound");
    // Members may not bind ports to hosts.
    let bind = json!({"port": {"network_id": sh, "binding:host_id": "h1"}});
    neutron_error(&n.bob.post("/v2.0/ports", &bind), 403, "HTTPForbidden");
}

/// A token from the identity endpoint (Keystone v3 password auth).
fn keystone_token(n: &N, user: &str, project: &str) -> String {
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": user}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
    let r = n.admin.post("/identity/v3/auth/tokens", &body).expect(201);
    r.header("x-subject-token").expect("X-Subject-Token").to_string()
}

#[test]
fn identity_tokens_scope_projects_on_the_neutron_api() {
    let n = start();
    let alice = Api::new(&n.admin.base, Some(keystone_token(&n, "alice", "tenant-a")));
    let bob = Api::new(&n.admin.base, Some(keystone_token(&n, "bob", "tenant-b")));
    let mine = alice.post("/v2.0/networks", &json!({"network": {"name": "a"}})).expect(201).body;
    assert_eq!(
        mine["network"]["project_id"], "tenant-a",
        "the token's project owns what it creates"
    );
    let aid = id(&mine, "network");
    neutron_error(&bob.get(&format!("/v2.0/networks/{aid}")), 404, "NetworkNotFound");
    neutron_error(&bob.delete(&format!("/v2.0/networks/{aid}")), 404, "NetworkNotFound");
    assert!(bob.get("/v2.0/networks").expect(200).body["networks"]
        .as_array()
        .expect("l")
        .is_empty());
    // An admin token scoped to a project creates in that project, sees all.
    let admin = Api::new(&n.admin.base, Some(keystone_token(&n, "admin", "tenant-b")));
    let theirs = admin.post("/v2.0/networks", &json!({"network": {"name": "b"}})).expect(201).body;
    assert_eq!(theirs["network"]["project_id"], "tenant-b");
    assert_eq!(
        admin.get("/v2.0/networks").expect(200).body["networks"].as_array().expect("l").len(),
        2
    );
    assert_eq!(
        bob.get("/v2.0/networks").expect(200).body["networks"].as_array().expect("l").len(),
        1
    );
    // A forged token is refused.
    let forged = Api::new(&n.admin.base, Some("tok-tenant-a".into()));
    neutron_error(&forged.get("/v2.0/networks"), 401, "HTTPUnauthorized");
}

/// An external network "public" (admin's) with one subnet without DHCP:
/// (network id, subnet id).
fn external(n: &N, cidr: &str) -> (String, String) {
    let ext = n
        .admin
        .post("/v2.0/networks", &json!({"network": {"name": "public", "router:external": true}}))
        .expect(201)
        .body;
    let ext_id = id(&ext, "network");
    let sub = json!({"subnet": {"network_id": ext_id, "ip_version": 4, "cidr": cidr, "enable_dhcp": false}});
    let sub = id(&n.admin.post("/v2.0/subnets", &sub).expect(201).body, "subnet");
    (ext_id, sub)
}

#[test]
fn an_external_network_goes_with_its_floating_ips() {
    let n = start();
    let (ext_id, esub) = external(&n, "172.24.5.0/24");
    let fip = n
        .alice
        .post("/v2.0/floatingips", &json!({"floatingip": {"floating_network_id": ext_id}}))
        .expect(201)
        .body;
    let fip = id(&fip, "floatingip");
    // A router gateway on it still holds it.
    let r = json!({"router": {"name": "r", "external_gateway_info": {"network_id": ext_id}}});
    let rid = id(&n.admin.post("/v2.0/routers", &r).expect(201).body, "router");
    neutron_error(&n.admin.delete(&format!("/v2.0/networks/{ext_id}")), 409, "NetworkInUse");
    n.admin.get(&format!("/v2.0/floatingips/{fip}")).expect(200);
    n.admin.delete(&format!("/v2.0/routers/{rid}")).expect(204);
    // Without it, the network goes and takes the floating IP, its port and
    // the subnet along.
    n.admin.delete(&format!("/v2.0/networks/{ext_id}")).expect(204);
    neutron_error(&n.admin.get(&format!("/v2.0/floatingips/{fip}")), 404, "FloatingIPNotFound");
    neutron_error(&n.admin.get(&format!("/v2.0/subnets/{esub}")), 404, "SubnetNotFound");
    let ports = n.admin.get(&format!("/v2.0/ports?network_id={ext_id}")).expect(200).body;
    assert!(ports["ports"].as_array().expect("l").is_empty(), "{ports}");
}

#[test]
fn tags_are_set_checked_replaced_filtered_and_owned() {
    let n = start();
    let (nid, sid) = net(&n.alice, "tagged", "10.3.0.0/24");
    let (other, _) = net(&n.alice, "plain", "10.4.0.0/24");
    let tags = |path: &str| n.alice.get(&format!("{path}/tags")).expect(200).body["tags"].clone();
    let netp = format!("/v2.0/networks/{nid}");
    n.alice.put(&format!("{netp}/tags/red"), &json!({})).expect(201);
    n.alice.put(&format!("{netp}/tags/red"), &json!({})).expect(201);
    assert_eq!(tags(&netp), json!(["red"]), "adding a tag twice keeps one");
    n.alice.get(&format!("{netp}/tags/red")).expect(204);
    neutron_error(&n.alice.get(&format!("{netp}/tags/blue")), 404, "TagNotFound");
    let rev = n.alice.get(&netp).expect(200).body["network"]["revision_number"].clone();
    assert!(rev.as_u64().is_some_and(|r| r >= 1), "a tag is a change: {rev}");
    // Replace all; the object shows them; lists filter on them.
    let put = n.alice.put(&format!("{netp}/tags"), &json!({"tags": ["a", "b", "a"]})).expect(200);
    assert_eq!(put.body["tags"], json!(["a", "b"]));
    assert_eq!(n.alice.get(&netp).expect(200).body["network"]["tags"], json!(["a", "b"]));
    n.alice.put(&format!("/v2.0/networks/{other}/tags/b"), &json!({})).expect(201);
    let names = |q: &str| -> Vec<String> {
        let l = n.alice.get(&format!("/v2.0/networks?{q}")).expect(200).body;
        let mut v: Vec<String> = l["networks"]
            .as_array()
            .expect("l")
            .iter()
            .map(|x| x["name"].as_str().expect("name").to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("tags=a,b"), ["tagged"]);
    assert_eq!(names("tags-any=a,b"), ["plain", "tagged"]);
    assert_eq!(names("not-tags=a,b"), ["plain"]);
    assert_eq!(names("not-tags-any=a"), ["plain"]);
    // Other resources take tags too.
    let subp = format!("/v2.0/subnets/{sid}");
    n.alice.put(&format!("{subp}/tags/s1"), &json!({})).expect(201);
    assert_eq!(tags(&subp), json!(["s1"]));
    // Removing one, then all.
    n.alice.delete(&format!("{netp}/tags/a")).expect(204);
    neutron_error(&n.alice.delete(&format!("{netp}/tags/a")), 404, "TagNotFound");
    n.alice.delete(&format!("{netp}/tags")).expect(204);
    assert_eq!(tags(&netp), json!([]));
    // Another project neither sees nor tags alice's objects; bad input is
    // a 400 that changes nothing.
    neutron_error(&n.bob.get(&format!("{netp}/tags")), 404, "NetworkNotFound");
    neutron_error(&n.bob.put(&format!("{netp}/tags/x"), &json!({})), 404, "NetworkNotFound");
    neutron_error(
        &n.alice.put(&format!("{netp}/tags"), &json!({"tags": "x"})),
        400,
        "HTTPBadRequest",
    );
    let long = "x".repeat(256);
    neutron_error(&n.alice.put(&format!("{netp}/tags/{long}"), &json!({})), 400, "HTTPBadRequest");
    assert_eq!(tags(&netp), json!([]));
    neutron_error(&n.alice.get(&format!("/v2.0/widgets/{nid}/tags")), 404, "HTTPNotFound");
}

#[test]
fn routers_gateways_interfaces_and_floating_ips() {
    let n = start();
    let (ext_id, _) = external(&n, "172.24.4.0/24");
    let (nid, sid) = net(&n.alice, "private", "10.2.0.0/24");
    let r = n
        .alice
        .post(
            "/v2.0/routers",
            &json!({"router": {"name": "r1", "external_gateway_info": {"network_id": ext_id}}}),
        )
        .expect(201)
        .body;
    let rid = id(&r, "router");
    let gw = &r["router"]["external_gateway_info"];
    assert_eq!(gw["enable_snat"], true);
    let gw_ip = gw["external_fixed_ips"][0]["ip_address"].as_str().expect("address").to_string();
    assert!(gw_ip.starts_with("172.24.4.") && gw_ip != "172.24.4.1", "{gw_ip}");
    // Interface by subnet: the gateway address on a router port.
    let add = n
        .alice
        .put(&format!("/v2.0/routers/{rid}/add_router_interface"), &json!({"subnet_id": sid}))
        .expect(200)
        .body;
    assert_eq!(add["id"], rid.as_str());
    assert_eq!(add["subnet_id"], sid.as_str());
    let if_port = add["port_id"].as_str().expect("port").to_string();
    let ports = n.alice.get(&format!("/v2.0/ports?device_id={rid}")).expect(200).body;
    let owners: Vec<&str> = ports["ports"]
        .as_array()
        .expect("l")
        .iter()
        .filter_map(|p| p["device_owner"].as_str())
        .collect();
    assert_eq!(owners, vec!["network:router_interface"], "the gateway port is not the tenant's");
    neutron_error(
        &n.alice
            .put(&format!("/v2.0/routers/{rid}/add_router_interface"), &json!({"subnet_id": sid})),
        400,
        "HTTPBadRequest",
    );
    // The MidoNet router: ports with the gateway addresses, SNAT rules.
    let mr = n.mido.ok(&format!("/routers/{rid}"));
    let rports = n.mido.ok(&format!("/routers/{rid}/ports"));
    let addrs: Vec<&str> =
        rports.as_array().expect("l").iter().filter_map(|p| p["portAddress"].as_str()).collect();
    assert!(addrs.contains(&"10.2.0.1") && addrs.contains(&gw_ip.as_str()), "{addrs:?}");
    for p in rports.as_array().expect("l") {
        assert!(p["peerId"].is_string(), "router ports are linked: {p}");
    }
    let post = n
        .mido
        .ok(&format!("/chains/{}/rules", mr["outboundFilterId"].as_str().expect("post chain")));
    assert!(post.as_array().expect("l").iter().any(|r| r["type"] == "snat"), "{post}");
    let routes = n.mido.ok(&format!("/routers/{rid}/routes"));
    assert!(
        routes
            .as_array()
            .expect("l")
            .iter()
            .any(|r| r["dstNetworkAddr"] == "0.0.0.0" && r["nextHopGateway"] == "172.24.4.1"),
        "{routes}"
    );

    // A floating IP for a VM port.
    let vm = n.alice.post("/v2.0/ports", &json!({"port": {"network_id": nid}})).expect(201).body;
    let vm_id = id(&vm, "port");
    let f = n
        .alice
        .post(
            "/v2.0/floatingips",
            &json!({"floatingip": {"floating_network_id": ext_id, "port_id": vm_id}}),
        )
        .expect(201)
        .body;
    let fid = id(&f, "floatingip");
    assert_eq!(f["floatingip"]["router_id"], rid.as_str());
    assert_eq!(f["floatingip"]["fixed_ip_address"], vm["port"]["fixed_ips"][0]["ip_address"]);
    assert_eq!(f["floatingip"]["status"], "ACTIVE");
    let fip = f["floatingip"]["floating_ip_address"].as_str().expect("address").to_string();
    let pre =
        n.mido.ok(&format!("/chains/{}/rules", mr["inboundFilterId"].as_str().expect("pre chain")));
    assert!(
        pre.as_array()
            .expect("l")
            .iter()
            .any(|r| r["type"] == "dnat" && r["nwDstAddress"] == fip.as_str()),
        "{pre}"
    );
    let arp = n.mido.ok(&format!("/bridges/{ext_id}/arp_table"));
    assert!(arp.as_array().expect("l").iter().any(|e| e["ip"] == fip.as_str()), "{arp}");
    neutron_error(
        &n.alice.put(
            &format!("/v2.0/routers/{rid}/remove_router_interface"),
            &json!({"subnet_id": sid}),
        ),
        409,
        "RouterInterfaceInUseByFloatingIP",
    );
    neutron_error(&n.alice.delete(&format!("/v2.0/routers/{rid}")), 409, "RouterInUse");
    // Disassociate, then everything comes apart.
    let d = n
        .alice
        .put(&format!("/v2.0/floatingips/{fid}"), &json!({"floatingip": {"port_id": null}}))
        .expect(200)
        .body;
    assert_eq!(d["floatingip"]["status"], "DOWN");
    let pre =
        n.mido.ok(&format!("/chains/{}/rules", mr["inboundFilterId"].as_str().expect("pre chain")));
    assert!(!pre.as_array().expect("l").iter().any(|r| r["type"] == "dnat"), "{pre}");
    n.alice.delete(&format!("/v2.0/floatingips/{fid}")).expect(204);
    n.alice
        .put(&format!("/v2.0/routers/{rid}/remove_router_interface"), &json!({"port_id": if_port}))
        .expect(200);
    n.alice
        .put(&format!("/v2.0/routers/{rid}"), &json!({"router": {"external_gateway_info": {}}}))
        .expect(200);
    n.alice.delete(&format!("/v2.0/routers/{rid}")).expect(204);
    n.mido.get(&format!("/routers/{rid}")).expect(404);
    n.alice.delete(&format!("/v2.0/ports/{vm_id}")).expect(204);
    n.admin.delete(&format!("/v2.0/networks/{ext_id}")).expect(204);
}

#[test]
fn security_group_rules_are_checked_and_translated() {
    let n = start();
    let sg = n
        .alice
        .post(
            "/v2.0/security-groups",
            &json!({"security_group": {"name": "web", "description": "web"}}),
        )
        .expect(201)
        .body;
    let sgid = id(&sg, "security_group");
    assert_eq!(
        sg["security_group"]["security_group_rules"].as_array().expect("rules").len(),
        2,
        "two egress rules"
    );
    let rule = |extra: Value| {
        let mut r = json!({"security_group_id": sgid, "direction": "ingress", "ethertype": "IPv4"});
        for (k, v) in extra.as_object().expect("obj") {
            r[k] = v.clone();
        }
        json!({"security_group_rule": r})
    };
    let ssh = n
        .alice
        .post("/v2.0/security-group-rules", &rule(json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"})))
        .expect(201)
        .body;
    assert_eq!(ssh["security_group_rule"]["normalized_cidr"], "0.0.0.0/0");
    neutron_error(
        &n.alice.post("/v2.0/security-group-rules", &rule(json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}))),
        409,
        "SecurityGroupRuleExists",
    );
    neutron_error(
        &n.alice.post("/v2.0/security-group-rules", &rule(json!({"port_range_min": 22}))),
        400,
        "SecurityGroupProtocolRequiredWithPorts",
    );
    neutron_error(
        &n.alice.post(
            "/v2.0/security-group-rules",
            &rule(json!({"protocol": "tcp", "port_range_min": 30, "port_range_max": 20})),
        ),
        400,
        "SecurityGroupInvalidPortRange",
    );
    neutron_error(
        &n.alice.post("/v2.0/security-group-rules", &rule(json!({"protocol": "bogus"}))),
        400,
        "SecurityGroupRuleInvalidProtocol",
    );
    neutron_error(
        &n.alice.post(
            "/v2.0/security-group-rules",
            &rule(json!({"remote_ip_prefix": "2001:db8::/64"})),
        ),
        400,
        "SecurityGroupRuleParameterConflict",
    );
    neutron_error(
        &n.alice.post("/v2.0/security-group-rules", &rule(json!({"direction": "sideways"}))),
        400,
        "HTTPBadRequest",
    );
    n.alice.post("/v2.0/security-group-rules", &rule(json!({"protocol": "icmp"}))).expect(201);
    // The group's ingress chain: the TCP rule (with its fragment twin) and ICMP.
    let rules = ingress_rules(&n, &sgid);
    let rules = rules.as_array().expect("l");
    assert_eq!(rules.len(), 3, "{rules:?}");
    let tcp: Vec<&Value> = rules.iter().filter(|r| r["nwProto"] == 6).collect();
    assert_eq!(tcp.len(), 2, "the TCP rule and its fragment twin");
    assert!(tcp
        .iter()
        .any(|r| r["tpDst"] == json!({"start": 22, "end": 22}) && r["fragmentPolicy"] == "header"));
    assert!(tcp.iter().any(|r| r["tpDst"].is_null() && r["fragmentPolicy"] == "nonheader"));
    assert!(rules.iter().any(|r| r["nwProto"] == 1 && r["type"] == "accept"));
    let listed = n
        .alice
        .get(&format!("/v2.0/security-group-rules?security_group_id={sgid}"))
        .expect(200)
        .body;
    assert_eq!(listed["security_group_rules"].as_array().expect("l").len(), 4);
    // In use by a port: 409; the default group cannot be removed by members.
    let (nid, _) = net(&n.alice, "n", "10.3.0.0/24");
    let p = n
        .alice
        .post("/v2.0/ports", &json!({"port": {"network_id": nid, "security_groups": [sgid]}}))
        .expect(201)
        .body;
    neutron_error(
        &n.alice.delete(&format!("/v2.0/security-groups/{sgid}")),
        409,
        "SecurityGroupInUse",
    );
    let members = n.mido.ok(&format!("/ip_addr_groups/{sgid}/ip_addrs"));
    assert_eq!(members[0]["addr"], p["port"]["fixed_ips"][0]["ip_address"], "{members}");
    n.alice.delete(&format!("/v2.0/ports/{}", id(&p, "port"))).expect(204);
    n.alice.delete(&format!("/v2.0/security-groups/{sgid}")).expect(204);
    let default = n.alice.get("/v2.0/security-groups?name=default").expect(200).body;
    let did = default["security_groups"][0]["id"].as_str().expect("default exists").to_string();
    neutron_error(
        &n.alice.delete(&format!("/v2.0/security-groups/{did}")),
        409,
        "SecurityGroupCannotRemoveDefault",
    );
}

#[test]
fn quotas_limit_creates_per_project() {
    let n = start();
    let q = n.alice.get("/v2.0/quotas/tenant-a").expect(200).body;
    assert_eq!(q["quota"]["network"], 100);
    neutron_error(
        &n.alice.put("/v2.0/quotas/tenant-a", &json!({"quota": {"network": 1}})),
        403,
        "HTTPForbidden",
    );
    n.admin.put("/v2.0/quotas/tenant-a", &json!({"quota": {"network": 1}})).expect(200);
    n.alice.post("/v2.0/networks", &json!({"network": {"name": "one"}})).expect(201);
    neutron_error(
        &n.alice.post("/v2.0/networks", &json!({"network": {"name": "two"}})),
        409,
        "OverQuota",
    );
    n.bob.post("/v2.0/networks", &json!({"network": {"name": "bobs"}})).expect(201);
    let all = n.admin.get("/v2.0/quotas").expect(200).body;
    assert_eq!(all["quotas"][0]["project_id"], "tenant-a");
    n.admin.delete("/v2.0/quotas/tenant-a").expect(204);
    n.alice.post("/v2.0/networks", &json!({"network": {"name": "two"}})).expect(201);
}

/// An error with Neutron's status, type and exact message.
#[track_caller]
fn neutron_message(r: &Resp, status: u16, kind: &str, message: &str) {
    neutron_error(r, status, kind);
    assert_eq!(r.body["NeutronError"]["message"], message, "{}", r.text);
}

/// A security group of alice's, and a rule body maker for it.
fn alice_group(n: &N, name: &str) -> String {
    let sg = n
        .alice
        .post("/v2.0/security-groups", &json!({"security_group": {"name": name}}))
        .expect(201)
        .body;
    id(&sg, "security_group")
}

fn sg_rule(sgid: &str, extra: Value) -> Value {
    let mut r = json!({"security_group_id": sgid, "direction": "ingress"});
    for (k, v) in extra.as_object().expect("obj") {
        r[k] = v.clone();
    }
    json!({"security_group_rule": r})
}

/// Issue 10 (tempest `test_create_security_group_rule_with_protocol_integer_value`):
/// `"protocol": 17` was refused as "not a valid string".
#[test]
fn security_group_rule_protocol_may_be_a_json_integer() {
    let n = start();
    let sgid = alice_group(&n, "int-proto");
    let r = n
        .alice
        .post("/v2.0/security-group-rules", &sg_rule(&sgid, json!({"protocol": 17})))
        .expect(201)
        .body;
    assert_eq!(r["security_group_rule"]["protocol"], "17", "shown as Neutron stores it");
    let rid = id(&r, "security_group_rule");
    let shown = n.alice.get(&format!("/v2.0/security-group-rules/{rid}")).expect(200).body;
    assert_eq!(shown["security_group_rule"]["protocol"], "17");
    // The same rule by name or in a string is a duplicate.
    for same in [json!("udp"), json!("17")] {
        neutron_message(
            &n.alice.post("/v2.0/security-group-rules", &sg_rule(&sgid, json!({"protocol": same}))),
            409,
            "SecurityGroupRuleExists",
            &format!("Security group rule already exists. Rule id is {rid}."),
        );
    }
    // 0 to 255 only, and only numbers and names.
    for bad in [json!(256), json!(-1), json!("300"), json!(true), json!(6.5), json!("bogus")] {
        let r =
            n.alice.post("/v2.0/security-group-rules", &sg_rule(&sgid, json!({"protocol": bad})));
        neutron_error(&r, 400, "SecurityGroupRuleInvalidProtocol");
        let m = r.body["NeutronError"]["message"].as_str().expect("message");
        assert!(m.starts_with("Security group rule protocol "), "{m}");
        assert!(m.ends_with("and integer representations [0 to 255] are supported."), "{m}");
    }
    // The group's ingress chain accepts UDP.
    let rules = ingress_rules(&n, &sgid);
    assert!(rules.as_array().expect("l").iter().any(|r| r["nwProto"] == 17), "{rules}");
}

/// Issue 10 (tempest `test_create_security_group_rule_with_invalid_ports`):
/// bad ports got generic messages, and a TCP rule with only one end of its
/// range was taken; each now gets Neutron's exception and words, and writes
/// nothing.
#[test]
fn security_group_rule_ports_get_neutron_errors() {
    let n = start();
    let sgid = alice_group(&n, "ports");
    let count = |n: &N| {
        let l = n.alice.get(&format!("/v2.0/security-group-rules?security_group_id={sgid}"));
        l.expect(200).body["security_group_rules"].as_array().expect("rules").len()
    };
    let before = count(&n);
    let range = "For TCP/UDP protocols, port_range_min must be <= port_range_max";
    let cases = [
        ("tcp", json!(-16), json!(80), "SecurityGroupInvalidPortValue", "Invalid value for port -16"),
        ("tcp", json!(80), json!(79), "SecurityGroupInvalidPortRange", range),
        ("tcp", json!(80), json!(65536), "SecurityGroupInvalidPortValue", "Invalid value for port 65536"),
        ("tcp", json!(null), json!(6), "SecurityGroupInvalidPortRange", range),
        ("tcp", json!(80), json!(null), "SecurityGroupInvalidPortRange", range),
        ("tcp", json!(-16), json!(65536), "SecurityGroupInvalidPortValue", "Invalid value for port -16"),
        ("tcp", json!(0), json!(80), "SecurityGroupInvalidPortValue", "Invalid value for port 0"),
        ("tcp", json!("abc"), json!(80), "SecurityGroupInvalidPortValue", "Invalid value for port abc"),
        (
            "icmp",
            json!(1),
            json!(256),
            "SecurityGroupInvalidIcmpValue",
            "Invalid value for ICMP code (port_range_max) 256. It must be 0 to 255.",
        ),
        ("icmp", json!(-1), json!(25), "SecurityGroupInvalidPortValue", "Invalid value for port -1"),
        (
            "icmp",
            json!(null),
            json!(6),
            "SecurityGroupMissingIcmpType",
            "ICMP code (port-range-max) 6 is provided but ICMP type (port-range-min) is missing.",
        ),
        (
            "icmp",
            json!(300),
            json!(1),
            "SecurityGroupInvalidIcmpValue",
            "Invalid value for ICMP type (port_range_min) 300. It must be 0 to 255.",
        ),
        (
            "gre",
            json!(5),
            json!(6),
            "SecurityGroupInvalidProtocolForPort",
            "Ports cannot be specified for protocol 47. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE.",
        ),
    ];
    for ethertype in ["IPv4", "IPv6"] {
        for (proto, min, max, kind, message) in &cases {
            let body = sg_rule(
                &sgid,
                json!({"ethertype": ethertype, "protocol": proto, "port_range_min": min, "port_range_max": max}),
            );
            neutron_message(&n.alice.post("/v2.0/security-group-rules", &body), 400, kind, message);
        }
    }
    neutron_message(
        &n.alice.post(
            "/v2.0/security-group-rules",
            &sg_rule(&sgid, json!({"port_range_min": 22, "port_range_max": 22})),
        ),
        400,
        "SecurityGroupProtocolRequiredWithPorts",
        "Must also specify protocol if port range is given.",
    );
    assert_eq!(count(&n), before, "nothing written");
    // Good ones: a numeric string is a port, and 1-65535 is no range at all.
    let r = n
        .alice
        .post(
            "/v2.0/security-group-rules",
            &sg_rule(
                &sgid,
                json!({"protocol": "tcp", "port_range_min": "80", "port_range_max": 81}),
            ),
        )
        .expect(201)
        .body;
    assert_eq!(
        (&r["security_group_rule"]["port_range_min"], &r["security_group_rule"]["port_range_max"]),
        (&json!(80), &json!(81))
    );
    let r = n
        .alice
        .post(
            "/v2.0/security-group-rules",
            &sg_rule(
                &sgid,
                json!({"protocol": "udp", "port_range_min": 1, "port_range_max": 65535}),
            ),
        )
        .expect(201)
        .body;
    assert!(r["security_group_rule"]["port_range_min"].is_null(), "{r}");
    assert!(r["security_group_rule"]["port_range_max"].is_null(), "{r}");
    let r = n
        .alice
        .post(
            "/v2.0/security-group-rules",
            &sg_rule(&sgid, json!({"protocol": "icmp", "port_range_min": 11})),
        )
        .expect(201)
        .body;
    assert_eq!(r["security_group_rule"]["port_range_min"], 11);
    assert!(r["security_group_rule"]["port_range_max"].is_null(), "{r}");
}

/// Issue 10 (tempest `test_create_security_group_rule_with_non_existent_remote_groupid`):
/// a remote group id that is not a UUID was a 400; Neutron answers 404 for
/// any remote group that does not exist, and likewise for the rule's group.
#[test]
fn security_group_rule_with_missing_remote_group_is_404() {
    let n = start();
    let sgid = alice_group(&n, "remote");
    let missing = "4b825dc6-0000-4000-8000-000000000000";
    for g in ["bad_group_id", missing] {
        neutron_message(
            &n.alice.post(
                "/v2.0/security-group-rules",
                &sg_rule(&sgid, json!({"protocol": "tcp", "remote_group_id": g})),
            ),
            404,
            "SecurityGroupNotFound",
            &format!("Security group {g} does not exist"),
        );
    }
    // Bob's group is not alice's to name.
    let bobs = n
        .bob
        .post("/v2.0/security-groups", &json!({"security_group": {"name": "b"}}))
        .expect(201)
        .body;
    let bobs = id(&bobs, "security_group");
    neutron_error(
        &n.alice
            .post("/v2.0/security-group-rules", &sg_rule(&sgid, json!({"remote_group_id": bobs}))),
        404,
        "SecurityGroupNotFound",
    );
    for g in ["nope", missing] {
        neutron_message(
            &n.alice.post("/v2.0/security-group-rules", &sg_rule(g, json!({}))),
            404,
            "SecurityGroupNotFound",
            &format!("Security group {g} does not exist"),
        );
    }
    neutron_message(
        &n.alice.get(&format!("/v2.0/security-group-rules/{missing}")),
        404,
        "SecurityGroupRuleNotFound",
        &format!("Security group rule {missing} does not exist"),
    );
    // Its own group as the remote one is fine; with a prefix too, not.
    n.alice
        .post("/v2.0/security-group-rules", &sg_rule(&sgid, json!({"remote_group_id": sgid})))
        .expect(201);
    neutron_message(
        &n.alice.post(
            "/v2.0/security-group-rules",
            &sg_rule(&sgid, json!({"protocol": "tcp", "remote_group_id": sgid, "remote_ip_prefix": "10.0.0.0/8"})),
        ),
        400,
        "SecurityGroupMultipleRemoteEntites",
        "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.",
    );
}

/// Issue 10 (tempest `test_create_security_group_update_name_default`): a
/// group could be renamed `default`, and then not be deleted. The name is
/// refused (409) on update as on create, in any case.
#[test]
fn security_group_cannot_be_renamed_default() {
    let n = start();
    let sgid = alice_group(&n, "plain");
    for name in ["default", "Default"] {
        neutron_message(
            &n.alice.put(
                &format!("/v2.0/security-groups/{sgid}"),
                &json!({"security_group": {"name": name}}),
            ),
            409,
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists.",
        );
        neutron_message(
            &n.alice.post("/v2.0/security-groups", &json!({"security_group": {"name": name}})),
            409,
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists.",
        );
    }
    let g = n.alice.get(&format!("/v2.0/security-groups/{sgid}")).expect(200).body;
    assert_eq!(g["security_group"]["name"], "plain", "unchanged");
    let defaults = n.alice.get("/v2.0/security-groups?name=default").expect(200).body;
    assert_eq!(defaults["security_groups"].as_array().expect("l").len(), 1, "one default group");
    let did = defaults["security_groups"][0]["id"].as_str().expect("id").to_string();
    neutron_message(
        &n.alice.put(
            &format!("/v2.0/security-groups/{did}"),
            &json!({"security_group": {"name": "renamed"}}),
        ),
        409,
        "SecurityGroupCannotUpdateDefault",
        "Updating default security group not allowed.",
    );
    n.alice
        .put(
            &format!("/v2.0/security-groups/{did}"),
            &json!({"security_group": {"description": "still mine"}}),
        )
        .expect(200);
    neutron_message(
        &n.alice.delete(&format!("/v2.0/security-groups/{did}")),
        409,
        "SecurityGroupCannotRemoveDefault",
        "Insufficient rights for removing default security group.",
    );
    n.alice.delete(&format!("/v2.0/security-groups/{sgid}")).expect(204);
}

/// What Neutron's plugin makes canonical or refuses across attributes: IPv6
/// ICMP by its IPv6 name, IPv6-only protocols not with IPv4, prefixes with
/// their length, and its exception types for a bad ethertype or prefix.
#[test]
fn security_group_rules_take_neutron_canonical_forms() {
    let n = start();
    let sgid = alice_group(&n, "forms");
    let post = |extra: Value| n.alice.post("/v2.0/security-group-rules", &sg_rule(&sgid, extra));
    let r = post(json!({"ethertype": "IPv6", "protocol": "icmp", "port_range_min": 128}))
        .expect(201)
        .body;
    assert_eq!(r["security_group_rule"]["protocol"], "ipv6-icmp");
    let r = post(json!({"ethertype": "IPv6", "protocol": 1})).expect(201).body;
    assert_eq!(r["security_group_rule"]["protocol"], "58");
    neutron_message(
        &post(json!({"ethertype": "IPv4", "protocol": "ipv6-icmp"})),
        400,
        "SecurityGroupEthertypeConflictWithProtocol",
        "Invalid ethertype IPv4 for protocol ipv6-icmp.",
    );
    let r = post(json!({"protocol": "tcp", "remote_ip_prefix": "10.1.2.3"})).expect(201).body;
    assert_eq!(r["security_group_rule"]["remote_ip_prefix"], "10.1.2.3/32");
    assert_eq!(r["security_group_rule"]["normalized_cidr"], "10.1.2.3/32");
    let r = post(
        json!({"ethertype": "ipv6", "protocol": "tcp", "remote_ip_prefix": "2001:DB8:0::5/64"}),
    )
    .expect(201)
    .body;
    assert_eq!(r["security_group_rule"]["ethertype"], "IPv6");
    assert_eq!(r["security_group_rule"]["remote_ip_prefix"], "2001:db8::5/64");
    assert_eq!(r["security_group_rule"]["normalized_cidr"], "2001:db8::/64");
    // A prefix of every address is the same rule as no prefix.
    post(json!({"protocol": "udp"})).expect(201);
    neutron_error(
        &post(json!({"protocol": "udp", "remote_ip_prefix": "0.0.0.0/0"})),
        409,
        "SecurityGroupRuleExists",
    );
    for p in ["192.168.1./24", "192.168.1.1/33", "bad_prefix", "256"] {
        neutron_message(
            &post(json!({"protocol": "tcp", "remote_ip_prefix": p})),
            400,
            "InvalidCIDR",
            &format!("Invalid CIDR {p} given as IP prefix."),
        );
    }
    neutron_message(
        &post(json!({"ethertype": "bad_ethertype"})),
        400,
        "SecurityGroupRuleInvalidEtherType",
        "Security group rule for ethertype 'bad_ethertype' not supported. Allowed values are ['IPv4', 'IPv6'].",
    );
    // Two equal rules in one bulk POST.
    let one = json!({"security_group_id": sgid, "direction": "egress", "protocol": "sctp"});
    neutron_message(
        &n.alice.post("/v2.0/security-group-rules", &json!({"security_group_rules": [one, one]})),
        409,
        "DuplicateSecurityGroupRuleInPost",
        "Duplicate Security Group Rule in POST.",
    );
}

// ------------------------------------------------------------ subnet pools

fn pool(api: &Api, body: Value) -> Value {
    api.post("/v2.0/subnetpools", &json!({ "subnetpool": body })).expect(201).body["subnetpool"]
        .clone()
}

/// A subnet from a pool on `nid`: the answer, status unchecked.
fn pool_subnet(api: &Api, nid: &str, pid: &str, extra: Value) -> Resp {
    let mut s = json!({"network_id": nid, "ip_version": 4, "subnetpool_id": pid});
    for (k, v) in extra.as_object().expect("obj") {
        s[k] = v.clone();
    }
    api.post("/v2.0/subnets", &json!({ "subnet": s }))
}

#[test]
fn subnet_pools_are_created_shown_updated_listed_and_deleted() {
    let n = start();
    // Overlapping and adjacent prefixes are merged; the defaults are
    // Neutron's; standard attributes are there.
    let p = pool(
        &n.alice,
        json!({"name": "p", "prefixes": ["10.10.0.0/17", "10.10.128.0/17", "10.10.5.0/24"],
               "description": "d"}),
    );
    let pid = p["id"].as_str().expect("id").to_string();
    assert_eq!(p["prefixes"], json!(["10.10.0.0/16"]));
    assert_eq!(p["ip_version"], 4);
    assert_eq!((p["min_prefixlen"].clone(), p["max_prefixlen"].clone()), (json!(8), json!(32)));
    assert_eq!(p["default_prefixlen"], 8);
    assert_eq!(p["default_quota"], Value::Null);
    assert_eq!(p["address_scope_id"], Value::Null);
    assert_eq!((p["shared"].clone(), p["is_default"].clone()), (json!(false), json!(false)));
    assert_eq!(p["project_id"], p["tenant_id"]);
    assert_eq!(p["description"], "d");
    assert_eq!(p["revision_number"], 0);
    assert!(p.get("_allocations").is_none(), "bookkeeping is not shown: {p}");
    for k in ["created_at", "updated_at", "tags"] {
        assert!(p.get(k).is_some(), "{k} in {p}");
    }
    let path = format!("/v2.0/subnetpools/{pid}");
    assert_eq!(n.alice.get(&path).expect(200).body["subnetpool"]["name"], "p");
    // Updates: prefixes may grow, never shrink; bounds are checked again.
    let u = n
        .alice
        .put(
            &path,
            &json!({"subnetpool": {"name": "q", "prefixes": ["10.10.0.0/16", "10.11.0.0/16"],
                                   "min_prefixlen": 20, "default_prefixlen": 24}}),
        )
        .expect(200)
        .body["subnetpool"]
        .clone();
    assert_eq!(u["name"], "q");
    assert_eq!(u["prefixes"], json!(["10.10.0.0/15"]));
    assert_eq!(
        (u["min_prefixlen"].clone(), u["default_prefixlen"].clone()),
        (json!(20), json!(24))
    );
    assert_eq!(u["revision_number"], 1);
    neutron_message(
        &n.alice.put(&path, &json!({"subnetpool": {"prefixes": ["10.10.0.0/16"]}})),
        400,
        "IllegalSubnetPoolPrefixUpdate",
        "Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes.",
    );
    neutron_message(
        &n.alice.put(&path, &json!({"subnetpool": {"default_prefixlen": 16}})),
        400,
        "IllegalSubnetPoolPrefixBounds",
        "Illegal prefix bounds: default_prefixlen=16, min_prefixlen=20.",
    );
    neutron_error(
        &n.alice.put(&path, &json!({"subnetpool": {"shared": true}})),
        400,
        "HTTPBadRequest",
    );
    neutron_error(
        &n.alice.put(&path, &json!({"subnetpool": {"ip_version": 6}})),
        400,
        "HTTPBadRequest",
    );
    assert_eq!(n.alice.get(&path).expect(200).body["subnetpool"]["revision_number"], 1);
    // Bulk create; lists filter, select fields and page.
    let bulk = n
        .alice
        .post(
            "/v2.0/subnetpools",
            &json!({"subnetpools": [{"name": "v6", "prefixes": ["2001:db8::/32"]},
                                    {"name": "b", "prefixes": ["172.16.0.0/12"]}]}),
        )
        .expect(201)
        .body;
    let v6 = &bulk["subnetpools"][0];
    assert_eq!((v6["ip_version"].clone(), v6["min_prefixlen"].clone()), (json!(6), json!(64)));
    assert_eq!(v6["max_prefixlen"], 128);
    let l = n.alice.get("/v2.0/subnetpools?ip_version=6&fields=name").expect(200).body;
    assert_eq!(l["subnetpools"], json!([{"name": "v6"}]));
    let l = n.alice.get("/v2.0/subnetpools?limit=2&sort_key=name").expect(200).body;
    assert_eq!(l["subnetpools"].as_array().expect("list").len(), 2);
    assert!(l["subnetpools_links"][0]["href"].as_str().is_some_and(|h| h.contains("marker=")));
    // Tags through the tag API.
    n.alice.put(&format!("{path}/tags/blue"), &json!({})).expect(201);
    let l = n.alice.get("/v2.0/subnetpools?tags=blue").expect(200).body;
    assert_eq!(l["subnetpools"][0]["id"], pid.as_str());
    // The extension and the resource are listed.
    let ext = n.alice.get("/v2.0/extensions/subnet_allocation").expect(200).body;
    assert_eq!(ext["extension"]["alias"], "subnet_allocation");
    n.alice.delete(&path).expect(204);
    neutron_message(
        &n.alice.get(&path),
        404,
        "SubnetPoolNotFound",
        &format!("Subnet pool {pid} could not be found."),
    );
}

#[test]
fn subnet_pool_bodies_get_neutron_errors_and_write_nothing() {
    let n = start();
    let bad = |body: Value, status: u16, kind: &str, message: &str| {
        let r = n.alice.post("/v2.0/subnetpools", &json!({ "subnetpool": body }));
        neutron_message(&r, status, kind, message);
    };
    bad(
        json!({"name": "x", "prefixes": []}),
        400,
        "EmptySubnetPoolPrefixList",
        "Empty subnet pool prefix list.",
    );
    bad(
        json!({"prefixes": ["10.0.0.0/8", "2001:db8::/32"]}),
        400,
        "PrefixVersionMismatch",
        "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
    );
    bad(
        json!({"prefixes": ["10.0.0.0/8"], "min_prefixlen": 24, "max_prefixlen": 16}),
        400,
        "IllegalSubnetPoolPrefixBounds",
        "Illegal prefix bounds: min_prefixlen=24, max_prefixlen=16.",
    );
    bad(
        json!({"prefixes": ["10.0.0.0/8"], "max_prefixlen": 33}),
        400,
        "IllegalSubnetPoolPrefixBounds",
        "Illegal prefix bounds: max_prefixlen=33, ip_version_max=32.",
    );
    bad(
        json!({"prefixes": ["10.0.0.0/8"], "min_prefixlen": 16, "default_prefixlen": 12}),
        400,
        "IllegalSubnetPoolPrefixBounds",
        "Illegal prefix bounds: default_prefixlen=12, min_prefixlen=16.",
    );
    bad(
        json!({"prefixes": ["2001:db8::/32"], "default_prefixlen": 48}),
        400,
        "IllegalSubnetPoolPrefixBounds",
        "Illegal prefix bounds: default_prefixlen=48, min_prefixlen=64.",
    );
    bad(
        json!({"prefixes": ["10.0.0.0/8"], "min_prefixlen": -1}),
        400,
        "HTTPBadRequest",
        "Invalid input for min_prefixlen. Reason: '-1' should be non-negative.",
    );
    bad(
        json!({"prefixes": ["10.0.0.5/8"]}),
        400,
        "HTTPBadRequest",
        "Invalid input for prefixes. Reason: '10.0.0.5/8' isn't a recognized IP subnet cidr, '10.0.0.0/8' is recommended.",
    );
    bad(
        json!({"name": "x"}),
        400,
        "HTTPBadRequest",
        "Failed to parse request. Required attribute 'prefixes' not specified",
    );
    bad(
        json!({"prefixes": ["10.0.0.0/8"], "address_scope_id": "6e5e2a34-5c5e-4a2b-8f1a-1d4b3a2c1e0f"}),
        400,
        "HTTPBadRequest",
        "Unrecognized attribute(s) 'address_scope_id'",
    );
    bad(
        json!({"prefixes": ["10.0.0.0/8"], "shared": true}),
        403,
        "HTTPForbidden",
        "(rule:create_subnetpool:shared) is disallowed by policy",
    );
    // A bulk create with one bad pool writes none.
    let r = n.alice.post(
        "/v2.0/subnetpools",
        &json!({"subnetpools": [{"name": "good", "prefixes": ["10.0.0.0/8"]},
                                {"name": "bad", "prefixes": []}]}),
    );
    neutron_error(&r, 400, "EmptySubnetPoolPrefixList");
    assert_eq!(n.alice.get("/v2.0/subnetpools").expect(200).body["subnetpools"], json!([]));
    // One default pool per IP version, and only admins make one.
    n.admin
        .post(
            "/v2.0/subnetpools",
            &json!({"subnetpool": {"prefixes": ["10.0.0.0/8"], "is_default": true}}),
        )
        .expect(201);
    neutron_error(
        &n.admin.post(
            "/v2.0/subnetpools",
            &json!({"subnetpool": {"prefixes": ["11.0.0.0/8"], "is_default": true}}),
        ),
        400,
        "InvalidInput",
    );
    neutron_error(
        &n.alice.post(
            "/v2.0/subnetpools",
            &json!({"subnetpool": {"prefixes": ["11.0.0.0/8"], "is_default": true}}),
        ),
        403,
        "HTTPForbidden",
    );
    n.admin
        .post(
            "/v2.0/subnetpools",
            &json!({"subnetpool": {"prefixes": ["2001:db8::/32"], "is_default": true}}),
        )
        .expect(201);
}

#[test]
fn subnets_take_their_cidrs_from_a_pool() {
    let n = start();
    let p = pool(
        &n.alice,
        json!({"name": "p", "prefixes": ["10.20.0.0/22"], "min_prefixlen": 24,
               "default_prefixlen": 24, "max_prefixlen": 28}),
    );
    let pid = p["id"].as_str().expect("id").to_string();
    let nid =
        id(&n.alice.post("/v2.0/networks", &json!({"network": {}})).expect(201).body, "network");
    // Without a cidr: the first free block, then the next; the gateway
    // and allocation pools follow the CIDR.
    let a = pool_subnet(&n.alice, &nid, &pid, json!({})).expect(201).body["subnet"].clone();
    assert_eq!(a["cidr"], "10.20.0.0/24");
    assert_eq!(a["subnetpool_id"], pid.as_str());
    assert_eq!(a["gateway_ip"], "10.20.0.1");
    assert_eq!(a["allocation_pools"], json!([{"start": "10.20.0.2", "end": "10.20.0.254"}]));
    let nid2 =
        id(&n.alice.post("/v2.0/networks", &json!({"network": {}})).expect(201).body, "network");
    let b = pool_subnet(&n.alice, &nid2, &pid, json!({})).expect(201).body["subnet"].clone();
    assert_eq!(b["cidr"], "10.20.1.0/24", "a different, non-overlapping CIDR");
    // prefixlen picks the size: the best fit is the smallest free block.
    let c = pool_subnet(&n.alice, &nid2, &pid, json!({"prefixlen": 28})).expect(201).body["subnet"]
        .clone();
    assert_eq!(c["cidr"], "10.20.2.0/28");
    // A given cidr must be free and inside the pool.
    let d = pool_subnet(&n.alice, &nid2, &pid, json!({"cidr": "10.20.3.0/24"})).expect(201);
    assert_eq!(d.body["subnet"]["subnetpool_id"], pid.as_str());
    let cannot = "Failed to allocate subnet: Cannot allocate requested subnet from the available set of prefixes.";
    for cidr in ["10.30.0.0/24", "10.20.0.0/24", "10.20.2.0/26"] {
        let r = pool_subnet(&n.alice, &nid, &pid, json!({"cidr": cidr}));
        neutron_message(&r, 409, "SubnetAllocationError", cannot);
    }
    // Out of bounds, out of space, or asking two ways.
    neutron_message(
        &pool_subnet(&n.alice, &nid, &pid, json!({"prefixlen": 29})),
        400,
        "MaxPrefixSubnetAllocationError",
        "Unable to allocate subnet with prefix length 29, maximum allowed prefix is 28.",
    );
    neutron_message(
        &pool_subnet(&n.alice, &nid, &pid, json!({"prefixlen": 23})),
        400,
        "MinPrefixSubnetAllocationError",
        "Unable to allocate subnet with prefix length 23, minimum allowed prefix is 24.",
    );
    neutron_message(
        &pool_subnet(&n.alice, &nid, &pid, json!({})),
        409,
        "SubnetAllocationError",
        "Failed to allocate subnet: Insufficient prefix space to allocate subnet size /24.",
    );
    neutron_message(
        &pool_subnet(&n.alice, &nid, &pid, json!({"cidr": "10.20.2.64/26", "prefixlen": 26})),
        400,
        "BadRequest",
        "Bad subnets request: cidr and prefixlen must not be supplied together.",
    );
    neutron_message(
        &pool_subnet(&n.alice, &nid, &pid, json!({"ip_version": 6})),
        400,
        "BadRequest",
        "Bad subnets request: Cannot allocate IPv6 subnet from IPv4 subnet pool.",
    );
    neutron_message(
        &pool_subnet(
            &n.alice,
            &nid,
            &pid,
            json!({"allocation_pools": [{"start": "10.20.2.20", "end": "10.20.2.30"}]}),
        ),
        400,
        "BadRequest",
        "Bad subnets request: allocation_pools allowed only for specific subnet requests.",
    );
    neutron_message(
        &n.alice.post("/v2.0/subnets", &json!({"subnet": {"network_id": nid, "ip_version": 4}})),
        400,
        "BadRequest",
        "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
    );
    // A pool in use is not deleted; deleting its subnets frees their CIDRs.
    let ppath = format!("/v2.0/subnetpools/{pid}");
    neutron_message(
        &n.alice.delete(&ppath),
        400,
        "SubnetPoolDeleteError",
        "Unable to delete subnet pool: Subnet pool has existing allocations.",
    );
    n.alice.delete(&format!("/v2.0/subnets/{}", id(&json!({ "subnet": a }), "subnet"))).expect(204);
    let again = pool_subnet(&n.alice, &nid, &pid, json!({})).expect(201);
    assert_eq!(again.body["subnet"]["cidr"], "10.20.0.0/24", "freed and taken again");
    // Deleting the networks deletes their subnets, which frees the pool.
    n.alice.delete(&format!("/v2.0/networks/{nid}")).expect(204);
    n.alice.delete(&format!("/v2.0/networks/{nid2}")).expect(204);
    n.alice.delete(&ppath).expect(204);
}

#[test]
fn subnet_pools_are_isolated_shared_and_quota_limited() {
    let n = start();
    let mine = pool(
        &n.alice,
        json!({"name": "mine", "prefixes": ["10.40.0.0/16"], "default_prefixlen": 24}),
    );
    let mid = mine["id"].as_str().expect("id").to_string();
    let mpath = format!("/v2.0/subnetpools/{mid}");
    // Another project neither sees, changes, deletes nor uses it.
    neutron_error(&n.bob.get(&mpath), 404, "SubnetPoolNotFound");
    neutron_error(
        &n.bob.put(&mpath, &json!({"subnetpool": {"name": "x"}})),
        404,
        "SubnetPoolNotFound",
    );
    neutron_error(&n.bob.delete(&mpath), 404, "SubnetPoolNotFound");
    assert_eq!(n.bob.get("/v2.0/subnetpools").expect(200).body["subnetpools"], json!([]));
    let bnet =
        id(&n.bob.post("/v2.0/networks", &json!({"network": {}})).expect(201).body, "network");
    neutron_error(&pool_subnet(&n.bob, &bnet, &mid, json!({})), 404, "SubnetPoolNotFound");
    // A shared pool (admin's) is seen and used by all, changed by none but
    // its owner; its quota counts each project's addresses.
    let shared = pool(
        &n.admin,
        json!({"name": "shared", "prefixes": ["10.50.0.0/16"], "default_prefixlen": 24,
               "shared": true, "default_quota": 512}),
    );
    let sid = shared["id"].as_str().expect("id").to_string();
    let spath = format!("/v2.0/subnetpools/{sid}");
    assert_eq!(n.bob.get(&spath).expect(200).body["subnetpool"]["shared"], true);
    neutron_error(
        &n.bob.put(&spath, &json!({"subnetpool": {"name": "x"}})),
        404,
        "SubnetPoolNotFound",
    );
    let b1 = pool_subnet(&n.bob, &bnet, &sid, json!({})).expect(201);
    assert_eq!(b1.body["subnet"]["cidr"], "10.50.0.0/24");
    let bnet2 =
        id(&n.bob.post("/v2.0/networks", &json!({"network": {}})).expect(201).body, "network");
    pool_subnet(&n.bob, &bnet2, &sid, json!({})).expect(201);
    neutron_message(
        &pool_subnet(&n.bob, &bnet2, &sid, json!({"prefixlen": 28})),
        409,
        "SubnetPoolQuotaExceeded",
        "Per-tenant subnet pool prefix quota exceeded.",
    );
    // Alice's quota is her own.
    let anet =
        id(&n.alice.post("/v2.0/networks", &json!({"network": {}})).expect(201).body, "network");
    let a1 = pool_subnet(&n.alice, &anet, &sid, json!({})).expect(201);
    assert_eq!(a1.body["subnet"]["cidr"], "10.50.2.0/24");
    // The default pool serves use_default_subnetpool.
    n.admin.put(&spath, &json!({"subnetpool": {"is_default": true}})).expect(200);
    let r = n.alice.post(
        "/v2.0/subnets",
        &json!({"subnet": {"network_id": anet, "ip_version": 4, "use_default_subnetpool": true,
                           "prefixlen": 26}}),
    );
    assert_eq!(r.expect(201).body["subnet"]["subnetpool_id"], sid.as_str());
    neutron_message(
        &n.alice.post(
            "/v2.0/subnets",
            &json!({"subnet": {"network_id": anet, "ip_version": 6, "use_default_subnetpool": true}}),
        ),
        400,
        "BadRequest",
        "Bad subnets request: No default subnetpool found for IPv6.",
    );
}

#[test]
fn concurrent_port_creates_never_share_an_address() {
    let n = start();
    let (nid, _) = net(&n.alice, "small", "10.7.0.0/27");
    let results: Vec<Resp> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let api = n.alice.clone();
                let body = json!({"port": {"network_id": nid}});
                sc.spawn(move || {
                    (0..10).map(|_| api.post("/v2.0/ports", &body)).collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    let mut addrs = std::collections::HashSet::new();
    for r in &results {
        match r.status {
            201 => {
                let ip = r.body["port"]["fixed_ips"][0]["ip_address"].as_str().expect("ip");
                assert!(addrs.insert(ip.to_string()), "{ip} handed out twice");
            }
            409 => neutron_error(r, 409, "IpAddressGenerationFailure"),
            s => panic!("port create answered {s}: {}", r.text),
        }
    }
    assert_eq!(addrs.len(), 29, "every address of the pool, once");
}

#[test]
fn concurrent_creates_do_not_pass_a_quota() {
    let n = start();
    let (nid, _) = net(&n.alice, "q", "10.8.0.0/24");
    n.admin.put("/v2.0/quotas/tenant-a", &json!({"quota": {"port": 5}})).expect(200);
    let results: Vec<Resp> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let api = n.alice.clone();
                let body = json!({"port": {"network_id": nid}});
                sc.spawn(move || (0..5).map(|_| api.post("/v2.0/ports", &body)).collect::<Vec<_>>())
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    let created = results.iter().filter(|r| r.status == 201).count();
    for r in results.iter().filter(|r| r.status != 201) {
        neutron_error(r, 409, "OverQuota");
    }
    assert_eq!(created, 5, "exactly the quota");
    let listed = n.alice.get(&format!("/v2.0/ports?network_id={nid}")).expect(200).body;
    assert_eq!(listed["ports"].as_array().expect("ports").len(), 5);
}

/// The DNAT rules of a MidoNet router's pre-routing chain.
fn dnat_rules(n: &N, rid: &str) -> Vec<Value> {
    let mr = n.mido.ok(&format!("/routers/{rid}"));
    let pre = n.mido.ok(&format!("/chains/{}/rules", mr["inboundFilterId"].as_str().expect("pre")));
    pre.as_array().expect("l").iter().filter(|r| r["type"] == "dnat").cloned().collect()
}

/// A router of alice's with a gateway on `ext_id` and an interface on `sid`.
fn router_on(n: &N, ext_id: &str, sid: &str) -> String {
    let r = json!({"router": {"name": "r", "external_gateway_info": {"network_id": ext_id}}});
    let rid = id(&n.alice.post("/v2.0/routers", &r).expect(201).body, "router");
    n.alice
        .put(&format!("/v2.0/routers/{rid}/add_router_interface"), &json!({"subnet_id": sid}))
        .expect(200);
    rid
}

/// Issue 10: writes find ports, floating IPs and rules through indexes
/// that an update must move, not just add to: a port's old group, a
/// floating IP's old port, a port's old device.
#[test]
fn updates_move_what_the_indexes_find() {
    let n = start();
    let (ext_id, _) = external(&n, "172.24.6.0/24");
    let (nid, sid) = net(&n.alice, "private", "10.3.0.0/24");
    let rid = router_on(&n, &ext_id, &sid);
    // A port's groups change: the old group is no longer in use.
    let (g1, g2) = (alice_group(&n, "g1"), alice_group(&n, "g2"));
    let port = |groups: &[&str]| {
        let p = json!({"port": {"network_id": nid, "security_groups": groups}});
        id(&n.alice.post("/v2.0/ports", &p).expect(201).body, "port")
    };
    let p1 = port(&[&g1]);
    neutron_error(
        &n.alice.delete(&format!("/v2.0/security-groups/{g1}")),
        409,
        "SecurityGroupInUse",
    );
    n.alice
        .put(&format!("/v2.0/ports/{p1}"), &json!({"port": {"security_groups": [g2]}}))
        .expect(200);
    n.alice.delete(&format!("/v2.0/security-groups/{g1}")).expect(204);
    neutron_error(
        &n.alice.delete(&format!("/v2.0/security-groups/{g2}")),
        409,
        "SecurityGroupInUse",
    );
    // A group named as remote by another's rule takes that rule along.
    let g3 = alice_group(&n, "g3");
    let rule = n
        .alice
        .post("/v2.0/security-group-rules", &sg_rule(&g2, json!({"remote_group_id": g3})))
        .expect(201)
        .body;
    let rule = id(&rule, "security_group_rule");
    n.alice.delete(&format!("/v2.0/security-groups/{g3}")).expect(204);
    neutron_error(
        &n.alice.get(&format!("/v2.0/security-group-rules/{rule}")),
        404,
        "SecurityGroupRuleNotFound",
    );

    // A floating IP moves to another port: deleting the first port leaves
    // it, and its NAT, on the second.
    let p2 = port(&[]);
    let f = json!({"floatingip": {"floating_network_id": ext_id, "port_id": p1}});
    let fid = id(&n.alice.post("/v2.0/floatingips", &f).expect(201).body, "floatingip");
    n.alice
        .put(&format!("/v2.0/floatingips/{fid}"), &json!({"floatingip": {"port_id": p2}}))
        .expect(200);
    n.alice.delete(&format!("/v2.0/ports/{p1}")).expect(204);
    let f = n.alice.get(&format!("/v2.0/floatingips/{fid}")).expect(200).body;
    assert_eq!(f["floatingip"]["port_id"], p2.as_str(), "{f}");
    assert_eq!(f["floatingip"]["router_id"], rid.as_str(), "{f}");
    assert_eq!(f["floatingip"]["status"], "ACTIVE", "{f}");
    let fixed = f["floatingip"]["fixed_ip_address"].as_str().expect("fixed").to_string();
    let dnat = dnat_rules(&n, &rid);
    assert_eq!(dnat.len(), 1, "{dnat:?}");
    assert_eq!(dnat[0]["natTargets"][0]["addressFrom"], fixed.as_str(), "{dnat:?}");
    // ... and the interface it needs stays.
    neutron_error(
        &n.alice.put(
            &format!("/v2.0/routers/{rid}/remove_router_interface"),
            &json!({"subnet_id": sid}),
        ),
        409,
        "RouterInterfaceInUseByFloatingIP",
    );
    n.alice.delete(&format!("/v2.0/ports/{p2}")).expect(204);
    let f = n.alice.get(&format!("/v2.0/floatingips/{fid}")).expect(200).body;
    assert_eq!(f["floatingip"]["port_id"], Value::Null, "{f}");
    assert!(dnat_rules(&n, &rid).is_empty());
    // The gateway stays while a floating IP is on the router: none is.
    n.alice
        .put(&format!("/v2.0/routers/{rid}"), &json!({"router": {"external_gateway_info": {}}}))
        .expect(200);

    // A port becomes a router interface (its device changes): the router
    // finds it, and once it is removed, no longer.
    let (_, sid2) = net(&n.alice, "second", "10.4.0.0/24");
    let nid2 = n.alice.get(&format!("/v2.0/subnets/{sid2}")).expect(200).body["subnet"]
        ["network_id"]
        .as_str()
        .expect("network")
        .to_string();
    let p3 =
        json!({"port": {"network_id": nid2, "device_id": "vm/1", "device_owner": "compute:nova"}});
    let p3 = id(&n.alice.post("/v2.0/ports", &p3).expect(201).body, "port");
    n.alice
        .put(&format!("/v2.0/ports/{p3}"), &json!({"port": {"device_id": "", "device_owner": ""}}))
        .expect(200);
    n.alice
        .put(&format!("/v2.0/routers/{rid}/add_router_interface"), &json!({"port_id": p3}))
        .expect(200);
    let rports = n.mido.ok(&format!("/routers/{rid}/ports"));
    assert_eq!(rports.as_array().expect("l").len(), 2, "{rports}");
    n.alice
        .put(&format!("/v2.0/routers/{rid}/remove_router_interface"), &json!({"subnet_id": sid}))
        .expect(200);
    neutron_error(&n.alice.delete(&format!("/v2.0/routers/{rid}")), 409, "RouterInUse");
    n.alice
        .put(&format!("/v2.0/routers/{rid}/remove_router_interface"), &json!({"port_id": p3}))
        .expect(200);
    n.alice.delete(&format!("/v2.0/routers/{rid}")).expect(204);
    n.mido.get(&format!("/routers/{rid}")).expect(404);
    // The subnets have no ports left on them.
    n.alice.delete(&format!("/v2.0/subnets/{sid2}")).expect(204);
    n.alice.delete(&format!("/v2.0/subnets/{sid}")).expect(204);
}

/// Issue 10: a store written before the `by/` indexes (here: with them
/// and the marker deleted) is indexed at the next start, and the writes
/// that read the indexes see what was there.
#[test]
fn a_store_written_without_the_indexes_is_indexed_at_start() {
    use midonet_store::{Txn, TxnOp};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("embedded:{}", dir.path().join("cluster.redb").display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let (rid, sid, g, vm, fid) = {
        let n = with(TestCluster::start(&url, true));
        let (ext_id, _) = external(&n, "172.24.7.0/24");
        let (nid, sid) = net(&n.alice, "private", "10.5.0.0/24");
        let rid = router_on(&n, &ext_id, &sid);
        let g = alice_group(&n, "web");
        let vm = json!({"port": {"network_id": nid, "security_groups": [g]}});
        let vm = id(&n.alice.post("/v2.0/ports", &vm).expect(201).body, "port");
        let f = json!({"floatingip": {"floating_network_id": ext_id, "port_id": vm}});
        let fid = id(&n.alice.post("/v2.0/floatingips", &f).expect(201).body, "floatingip");
        let store = n.c.cluster().store.clone();
        rt.block_on(store.txn(Txn::new().and_then([
            TxnOp::delete_prefix("/midonet/v1/neutron/by/"),
            TxnOp::delete("/midonet/v1/neutron/index_version"),
        ])))
        .expect("forget the indexes");
        n.c.stop();
        (rid, sid, g, vm, fid)
    };
    let n = with(TestCluster::start(&url, true));
    let marker = rt
        .block_on(n.c.cluster().store.get(b"/midonet/v1/neutron/index_version"))
        .expect("get")
        .expect("the marker is written");
    assert_eq!(marker.value, b"1");
    neutron_error(
        &n.alice.delete(&format!("/v2.0/security-groups/{g}")),
        409,
        "SecurityGroupInUse",
    );
    neutron_error(
        &n.alice.put(
            &format!("/v2.0/routers/{rid}/remove_router_interface"),
            &json!({"subnet_id": sid}),
        ),
        409,
        "RouterInterfaceInUseByFloatingIP",
    );
    neutron_error(&n.alice.delete(&format!("/v2.0/routers/{rid}")), 409, "RouterInUse");
    assert_eq!(dnat_rules(&n, &rid).len(), 1);
    n.alice.delete(&format!("/v2.0/ports/{vm}")).expect(204);
    let f = n.alice.get(&format!("/v2.0/floatingips/{fid}")).expect(200).body;
    assert_eq!(f["floatingip"]["port_id"], Value::Null, "{f}");
    assert!(dnat_rules(&n, &rid).is_empty());
    n.alice.delete(&format!("/v2.0/security-groups/{g}")).expect(204);
    n.alice
        .put(&format!("/v2.0/routers/{rid}/remove_router_interface"), &json!({"subnet_id": sid}))
        .expect(200);
}
