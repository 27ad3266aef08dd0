//! Invalid input, 404s, 409s, and the atomicity of multi-object writes.
mod common;
use common::{dump, host, Api};
use midonet_cluster::testing::TestCluster;
use serde_json::{json, Value};
use std::collections::HashSet;

fn setup() -> (TestCluster, Api) {
    let c = TestCluster::start("memory:", true);
    let api = Api::new(&c.url(), Some(c.admin_token()));
    (c, api)
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no string {k} in {v}")).to_string()
}

/// Each bad body is a 400 naming the field, with nothing written.
#[test]
fn invalid_input_is_400_naming_the_field_and_writes_nothing() {
    let (c, api) = setup();
    let b = api.create("/bridges", &json!({"name": "b"}));
    let r = api.create("/routers", &json!({"name": "r"}));
    let r2 = api.create("/routers", &json!({"name": "r2"}));
    let other_rp = api.create(
        &s(&r2, "ports"),
        &json!({"portAddress": "10.2.0.1", "networkAddress": "10.2.0.0", "networkLength": 24}),
    );
    let ch = api.create("/chains", &json!({"name": "c"}));
    let tz = api.create("/tunnel_zones", &json!({"name": "tz"}));
    let h = host(&api, "h");
    let missing = uuid::Uuid::new_v4().to_string();
    let long = "x".repeat(300);
    let cases: Vec<(String, Value, &str)> = vec![
        (s(&r, "ports"), json!({"networkAddress": "10.0.0.0", "networkLength": 24}), "portAddress"),
        (
            s(&r, "ports"),
            json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": "abc"}),
            "networkLength",
        ),
        (
            s(&r, "ports"),
            json!({"portAddress": "10.1.0.1", "networkAddress": "10.0.0.0", "networkLength": 24}),
            "portAddress",
        ),
        (
            s(&r, "ports"),
            json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24, "portMac": "01:00:5e:00:00:01"}),
            "portMac",
        ),
        (s(&b, "ports"), json!({"vlanId": 5000}), "vlanId"),
        (s(&b, "ports"), json!({"peerId": missing}), "peerId"),
        (s(&b, "ports"), json!({"inboundFilterId": missing}), "inboundFilterId"),
        ("/bridges".into(), json!({"name": long}), "name"),
        ("/bridges".into(), json!({"inboundFilterId": missing}), "inboundFilterId"),
        ("/bridges".into(), json!({"outboundFilterId": "not-a-uuid"}), "outboundFilterId"),
        ("/routers".into(), json!({"loadBalancerId": missing}), "loadBalancerId"),
        (s(&ch, "rules"), json!({"type": "accept", "nwProto": "tcp"}), "nwProto"),
        (s(&ch, "rules"), json!({"type": "bogus"}), "type"),
        (s(&ch, "rules"), json!({"type": "jump"}), "jumpChainId"),
        (s(&ch, "rules"), json!({"type": "jump", "jumpChainId": missing}), "jumpChainId"),
        (s(&ch, "rules"), json!({"type": "accept", "tpDst": {"start": 90, "end": 80}}), "tpDst"),
        (s(&ch, "rules"), json!({"type": "accept", "dlSrc": "zz:zz"}), "dlSrc"),
        (s(&ch, "rules"), json!({"type": "accept", "position": 0}), "position"),
        (
            s(&r, "routes"),
            json!({"dstNetworkAddr": "10.0.0.0", "dstNetworkLength": 24}),
            "nextHopPort",
        ),
        (
            s(&r, "routes"),
            json!({"dstNetworkAddr": "10.0.0.0", "dstNetworkLength": 24, "nextHopPort": other_rp["id"]}),
            "nextHopPort",
        ),
        (
            s(&r, "routes"),
            json!({"dstNetworkAddr": "10.0.0.0", "dstNetworkLength": 40, "type": "BlackHole"}),
            "dstNetworkLength",
        ),
        (s(&tz, "hosts"), json!({"hostId": h, "ipAddress": "224.0.0.1"}), "ipAddress"),
        (s(&b, "dhcpSubnets"), json!({"subnetLength": 24}), "subnetPrefix"),
        (
            s(&b, "dhcpSubnets"),
            json!({"subnetPrefix": "10.0.0.0", "subnetLength": 24, "defaultGateway": "10.9.9.9"}),
            "defaultGateway",
        ),
        (s(&b, "macTable"), json!({"macAddr": "02:00:00:00:00:01", "portId": missing}), "portId"),
        ("/mirrors".into(), json!({}), "toPortId"),
        ("/pools".into(), json!({"loadBalancerId": missing}), "loadBalancerId"),
        ("/health_monitors".into(), json!({"type": "UDP"}), "type"),
        (
            "/health_monitors".into(),
            json!({"type": "HTTP", "expectedCodes": "ok"}),
            "expectedCodes",
        ),
    ];
    let before = dump(&c);
    for (path, body, field) in cases {
        let r = api.post(&path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text);
        assert_eq!(r.field(), Some(field), "{path} {body}: {}", r.text);
        assert_eq!(r.content_type.as_deref(), Some("application/vnd.org.midonet.Error-v1+json"));
        assert_eq!(r.body["code"], 400);
        assert!(r.body["violations"][0]["property"].is_string());
    }
    // Bodies that are not JSON at all.
    for bad in ["{not json", "[1,2]", "\"x\""] {
        let r = api.raw("POST", "/bridges", &[("Content-Type", "application/json")], Some(bad));
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    // Bad PUTs.
    let mut bd = api.ok(&s(&b, "uri"));
    bd["id"] = json!(missing);
    assert_eq!(api.put(&s(&b, "uri"), &bd).expect(400).field(), Some("id"));
    assert_eq!(dump(&c), before, "a rejected request wrote something");
}

#[test]
fn unknown_ids_and_paths_are_404_json() {
    let (_c, api) = setup();
    let id = uuid::Uuid::new_v4();
    for path in [
        format!("/bridges/{id}"),
        "/bridges/not-a-uuid".to_string(),
        format!("/routers/{id}"),
        format!("/ports/{id}"),
        format!("/bridges/{id}/ports"),
        format!("/chains/{id}/rules"),
        format!("/rules/{id}"),
        format!("/routes/{id}"),
        format!("/hosts/{id}/ports"),
        "/no_such_collection".to_string(),
    ] {
        let r = api.get(&path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body["code"], 404, "{path}: {}", r.text);
    }
    api.delete(&format!("/bridges/{id}")).expect(404);
    api.put(&format!("/bridges/{id}"), &json!({})).expect(404);
    api.post(&format!("/bridges/{id}/ports"), &json!({})).expect(404);
}

#[test]
fn conflicts() {
    let (c, api) = setup();
    let b = api.create("/bridges", &json!({}));
    let b2 = api.create("/bridges", &json!({}));
    let r = api.create("/routers", &json!({}));
    let p1 = api.create(&s(&b, "ports"), &json!({}));
    let p2 = api.create(&s(&b, "ports"), &json!({}));
    let q = api.create(&s(&b2, "ports"), &json!({}));
    let rp = api.create(
        &s(&r, "ports"),
        &json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24}),
    );
    let rp2 = api.create(
        &s(&r, "ports"),
        &json!({"portAddress": "10.0.1.1", "networkAddress": "10.0.1.0", "networkLength": 24}),
    );
    // Same device.
    assert_eq!(api.post(&s(&p1, "link"), &json!({"peerId": p2["id"]})).status, 409);
    assert_eq!(api.post(&s(&rp, "link"), &json!({"peerId": rp2["id"]})).status, 409);
    // Two bridge ports without a VLAN.
    assert_eq!(
        api.post(&s(&p1, "link"), &json!({"peerId": q["id"]})).expect(400).field(),
        Some("peerId")
    );
    // Bound port cannot be linked; linked port cannot be bound.
    let h = host(&api, "h");
    api.post(&format!("/hosts/{h}/ports"), &json!({"portId": p2["id"], "interfaceName": "tap0"}))
        .expect(201);
    assert_eq!(api.post(&s(&rp, "link"), &json!({"peerId": p2["id"]})).status, 409);
    api.post(&s(&rp, "link"), &json!({"peerId": p1["id"]})).expect(201);
    // Linking the same pair again is a no-op.
    api.post(&s(&rp, "link"), &json!({"peerId": p1["id"]})).expect(201);
    assert_eq!(
        api.post(
            &format!("/hosts/{h}/ports"),
            &json!({"portId": p1["id"], "interfaceName": "tap1"})
        )
        .status,
        409
    );
    assert_eq!(api.post(&s(&rp2, "link"), &json!({"peerId": p1["id"]})).status, 409);
    // Creating with an id that exists.
    assert_eq!(api.post("/bridges", &json!({"id": b["id"]})).status, 409);
    // Creating with a fresh explicit id uses it.
    let id = uuid::Uuid::new_v4().to_string();
    assert_eq!(api.create("/bridges", &json!({"id": id}))["id"], json!(id));
    // Nothing conflicted at the store level in this sequential test.
    assert_eq!(c.cluster().metrics.conflicts(), 0);
}

#[test]
fn delete_bridge_unlinks_peers_and_deletes_everything_under_it() {
    let (c, api) = setup();
    let b = api.create("/bridges", &json!({}));
    let r = api.create("/routers", &json!({}));
    let bp = api.create(&s(&b, "ports"), &json!({}));
    let rp = api.create(
        &s(&r, "ports"),
        &json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24}),
    );
    api.post(&s(&rp, "link"), &json!({"peerId": bp["id"]})).expect(201);
    let sub =
        api.create(&s(&b, "dhcpSubnets"), &json!({"subnetPrefix": "10.0.0.0", "subnetLength": 24}));
    api.create(&s(&sub, "hosts"), &json!({"macAddr": "02:00:00:00:00:01", "ipAddr": "10.0.0.5"}));
    api.create(&s(&b, "macTable"), &json!({"macAddr": "02:00:00:00:00:01", "portId": bp["id"]}));
    api.create(&s(&b, "arpTable"), &json!({"ip": "10.0.0.5", "mac": "02:00:00:00:00:01"}));
    api.delete(&s(&b, "uri")).expect(204);
    assert!(api.ok(&s(&rp, "uri"))["peerId"].is_null());
    let keys: Vec<String> =
        dump(&c).into_iter().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()).collect();
    let bid = s(&b, "id");
    assert!(!keys.iter().any(|k| k.contains(&bid)), "leftovers of the bridge: {keys:?}");
    // Deleting the router takes its routes.
    api.delete(&s(&r, "uri")).expect(204);
    let keys: Vec<String> =
        dump(&c).into_iter().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()).collect();
    assert!(
        !keys
            .iter()
            .any(|k| k.starts_with("/midonet/v1/routes/") || k.starts_with("/midonet/v1/ports/")),
        "{keys:?}"
    );
}

/// Many clients creating ports on one bridge at once: all succeed with
/// distinct tunnel keys.
#[test]
fn concurrent_port_creates_get_unique_tunnel_keys() {
    let (_c, api) = setup();
    let b = api.create("/bridges", &json!({}));
    let ports = s(&b, "ports");
    let keys: Vec<u64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let api = api.clone();
                let ports = ports.clone();
                sc.spawn(move || {
                    (0..10)
                        .map(|_| api.create(&ports, &json!({}))["tunnelKey"].as_u64().expect("key"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    let uniq: HashSet<u64> = keys.iter().copied().collect();
    assert_eq!(keys.len(), 80);
    assert_eq!(uniq.len(), 80, "duplicate tunnel keys");
    assert_eq!(api.count(&ports), 80);
}

/// Two ports race to link to the same third port: exactly one wins.
#[test]
fn racing_links_to_one_port_leave_one_link() {
    let (_c, api) = setup();
    for _ in 0..5 {
        let b = api.create("/bridges", &json!({}));
        let target = api.create(&s(&b, "ports"), &json!({}));
        let routers: Vec<Value> = (0..4)
            .map(|i| {
                let r = api.create("/routers", &json!({}));
                api.create(&s(&r, "ports"), &json!({"portAddress": format!("10.0.{i}.1"), "networkAddress": format!("10.0.{i}.0"), "networkLength": 24}))
            })
            .collect();
        let statuses: Vec<u16> = std::thread::scope(|sc| {
            let hs: Vec<_> = routers
                .iter()
                .map(|rp| {
                    let api = api.clone();
                    let link = s(rp, "link");
                    let tid = target["id"].clone();
                    sc.spawn(move || api.post(&link, &json!({"peerId": tid})).status)
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
        let peer = api.ok(&s(&target, "uri"))["peerId"].clone();
        let linked: Vec<&Value> =
            routers.iter().filter(|rp| api.ok(&s(rp, "uri"))["peerId"] == target["id"]).collect();
        assert_eq!(linked.len(), 1);
        assert_eq!(linked[0]["id"], peer);
    }
}

/// Ports created while their bridge is deleted never survive the bridge.
#[test]
fn no_orphan_ports_when_creates_race_a_bridge_delete() {
    let (_c, api) = setup();
    for _ in 0..10 {
        let b = api.create("/bridges", &json!({}));
        std::thread::scope(|sc| {
            for _ in 0..3 {
                let api = api.clone();
                let ports = s(&b, "ports");
                sc.spawn(move || {
                    for _ in 0..5 {
                        let st = api.post(&ports, &json!({})).status;
                        assert!(st == 201 || st == 404 || st == 409, "{st}");
                    }
                });
            }
            let api = api.clone();
            let uri = s(&b, "uri");
            sc.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(3));
                assert_eq!(api.delete(&uri).status, 204);
            });
        });
        api.get(&s(&b, "uri")).expect(404);
        let bid = b["id"].clone();
        let orphans: Vec<Value> = api
            .ok("/ports")
            .as_array()
            .expect("list")
            .iter()
            .filter(|p| p["deviceId"] == bid)
            .cloned()
            .collect();
        assert!(orphans.is_empty(), "orphan ports: {orphans:?}");
    }
}

/// The chain fields of each device kind, as (collection, fields).
const CHAIN_FIELDS: &[(&str, &[&str])] = &[
    ("bridge", &["inboundFilterId", "outboundFilterId"]),
    ("router", &["inboundFilterId", "outboundFilterId", "forwardChainId", "localRedirectChainId"]),
    ("port", &["inboundFilterId", "outboundFilterId"]),
];

fn fields_of(what: &str) -> &'static [&'static str] {
    CHAIN_FIELDS.iter().find(|(w, _)| *w == what).map(|(_, f)| *f).expect("known kind")
}

/// Deleting a chain that bridges, routers and ports use succeeds and clears
/// every field that named it, as MidoNet's CLEAR bindings do, so clients
/// can delete chains before devices. Other fields are left alone.
#[test]
fn deleting_a_chain_clears_the_device_and_port_fields_that_use_it() {
    let (_c, api) = setup();
    let c = api.create("/chains", &json!({"name": "f"}));
    let rule = api.create(&s(&c, "rules"), &json!({"type": "drop"}));
    let keep = api.create("/chains", &json!({"name": "kept"}));
    let with = |what: &str, extra: Value| {
        let mut body = extra;
        for f in fields_of(what) {
            body[*f] = c["id"].clone();
        }
        body
    };
    let b = api.create("/bridges", &with("bridge", json!({"name": "b"})));
    let r = api.create("/routers", &with("router", json!({"name": "r"})));
    let bp = api.create(&s(&b, "ports"), &with("port", json!({})));
    let rp = api.create(
        &s(&r, "ports"),
        &with(
            "port",
            json!({"portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24}),
        ),
    );
    // A port whose filters name another chain keeps them.
    let other = api.create(
        &s(&b, "ports"),
        &json!({"inboundFilterId": keep["id"], "outboundFilterId": c["id"]}),
    );
    let objs = [("bridge", &b), ("router", &r), ("port", &bp), ("port", &rp)];
    for (what, o) in objs {
        let now = api.ok(&s(o, "uri"));
        for f in fields_of(what) {
            assert_eq!(now[*f], c["id"], "{what}.{f} set before the delete");
        }
    }
    api.delete(&s(&c, "uri")).expect(204);
    api.get(&s(&c, "uri")).expect(404);
    api.get(&s(&rule, "uri")).expect(404);
    for (what, o) in objs {
        let now = api.ok(&s(o, "uri"));
        for f in fields_of(what) {
            assert!(now[*f].is_null(), "{what}.{f} cleared: {now}");
        }
        assert_eq!(now["id"], o["id"]);
    }
    assert_eq!(api.ok(&s(&b, "uri"))["name"], "b");
    assert_eq!(api.ok(&s(&rp, "uri"))["portAddress"], "10.0.0.1");
    let other = api.ok(&s(&other, "uri"));
    assert_eq!(other["inboundFilterId"], keep["id"]);
    assert!(other["outboundFilterId"].is_null());
}

/// The clearing is part of the delete's transaction: a delete refused for
/// another reason (a jump rule targets the chain) clears nothing.
#[test]
fn a_refused_chain_delete_clears_no_filter() {
    let (_c, api) = setup();
    let c = api.create("/chains", &json!({}));
    let b = api.create("/bridges", &json!({"inboundFilterId": c["id"]}));
    let r = api.create("/routers", &json!({"forwardChainId": c["id"]}));
    let bp = api.create(&s(&b, "ports"), &json!({"outboundFilterId": c["id"]}));
    let from = api.create("/chains", &json!({}));
    let jump = api.create(&s(&from, "rules"), &json!({"type": "jump", "jumpChainId": c["id"]}));
    let e = api.delete(&s(&c, "uri")).expect(409);
    assert!(e.text.contains("jumpChainId"), "{}", e.text);
    assert_eq!(api.ok(&s(&b, "uri"))["inboundFilterId"], c["id"]);
    assert_eq!(api.ok(&s(&r, "uri"))["forwardChainId"], c["id"]);
    assert_eq!(api.ok(&s(&bp, "uri"))["outboundFilterId"], c["id"]);
    // Without the jump, the same delete clears all three.
    api.delete(&s(&jump, "uri")).expect(204);
    api.delete(&s(&c, "uri")).expect(204);
    assert!(api.ok(&s(&b, "uri"))["inboundFilterId"].is_null());
    assert!(api.ok(&s(&r, "uri"))["forwardChainId"].is_null());
    assert!(api.ok(&s(&bp, "uri"))["outboundFilterId"].is_null());
}

/// Ports created with a chain as their filter while the chain is deleted
/// never keep a filter naming the deleted chain: a create committed before
/// the delete is cleared by it (the guard makes the delete see it), one
/// after it finds the chain gone (400).
#[test]
fn filters_set_while_their_chain_is_deleted_never_dangle() {
    let (_c, api) = setup();
    let b = api.create("/bridges", &json!({}));
    for _ in 0..10 {
        let c = api.create("/chains", &json!({}));
        std::thread::scope(|sc| {
            for _ in 0..3 {
                let api = api.clone();
                let ports = s(&b, "ports");
                let cid = c["id"].clone();
                sc.spawn(move || {
                    for _ in 0..5 {
                        let st = api.post(&ports, &json!({"inboundFilterId": cid})).status;
                        assert!(st == 201 || st == 400 || st == 409, "{st}");
                    }
                });
            }
            let api = api.clone();
            let uri = s(&c, "uri");
            sc.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(3));
                assert_eq!(api.delete(&uri).status, 204);
            });
        });
        api.get(&s(&c, "uri")).expect(404);
        let ports = api.ok(&s(&b, "ports"));
        let dangling: Vec<&Value> = ports
            .as_array()
            .expect("list")
            .iter()
            .filter(|p| p["inboundFilterId"] == c["id"])
            .collect();
        assert!(dangling.is_empty(), "filters naming a deleted chain: {dangling:?}");
    }
}

/// Ports added to a port group while it is deleted never list it after.
#[test]
fn members_added_while_their_group_is_deleted_never_dangle() {
    let (_c, api) = setup();
    let b = api.create("/bridges", &json!({}));
    let ports: Vec<Value> = (0..9).map(|_| api.create(&s(&b, "ports"), &json!({}))).collect();
    for _ in 0..10 {
        let pg = api.create("/port_groups", &json!({}));
        std::thread::scope(|sc| {
            for chunk in ports.chunks(3) {
                let api = api.clone();
                let members = s(&pg, "ports");
                sc.spawn(move || {
                    for p in chunk {
                        let st = api.post(&members, &json!({"portId": p["id"]})).status;
                        assert!(st == 201 || st == 404 || st == 409, "{st}");
                    }
                });
            }
            let api = api.clone();
            let uri = s(&pg, "uri");
            sc.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(2));
                assert_eq!(api.delete(&uri).status, 204);
            });
        });
        api.get(&s(&pg, "uri")).expect(404);
        for p in &ports {
            let now = api.ok(&s(p, "uri"));
            let groups = now["portGroupIds"].as_array().expect("portGroupIds");
            assert!(!groups.contains(&pg["id"]), "port still lists the deleted group: {now}");
        }
    }
}
