//! The core API scenario against a real etcd. Fails when etcd is missing,
//! unless MIDONET_SKIP_ETCD=1.
mod common;
use common::Api;
use midonet_cluster::testing::TestCluster;
use serde_json::json;
use std::collections::HashSet;

#[test]
fn core_scenario_on_etcd() {
    let Some(etcd) = midonet_store::testutil::etcd_or_skip() else { return };
    let c = TestCluster::start(&etcd.url(), true);
    let api = Api::new(&c.url(), Some(c.admin_token()));
    common::core_scenario(&api);
    // Invalid input writes nothing on etcd either.
    let before = common::dump(&c);
    let r = api.create("/routers", &json!({}));
    let after_router = common::dump(&c);
    assert_ne!(before, after_router);
    assert_eq!(
        api.post(r["ports"].as_str().expect("ports"), &json!({"networkLength": 24}))
            .expect(400)
            .field(),
        Some("portAddress")
    );
    assert_eq!(common::dump(&c), after_router);
    // Concurrent creates on etcd: unique tunnel keys.
    let b = api.create("/bridges", &json!({}));
    let ports = b["ports"].as_str().expect("ports").to_string();
    let keys: Vec<u64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let api = api.clone();
                let ports = ports.clone();
                sc.spawn(move || {
                    (0..5)
                        .map(|_| api.create(&ports, &json!({}))["tunnelKey"].as_u64().expect("key"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(keys.iter().copied().collect::<HashSet<_>>().len(), 20);
}

#[test]
fn two_clusters_on_one_etcd_see_each_other_and_conflict_safely() {
    let Some(etcd) = midonet_store::testutil::etcd_or_skip() else { return };
    let c1 = TestCluster::start(&etcd.url(), false);
    let c2 = TestCluster::start(&etcd.url(), false);
    let a1 = Api::new(&c1.url(), None);
    let a2 = Api::new(&c2.url(), None);
    let b = a1.create("/bridges", &json!({"name": "shared"}));
    let id = b["id"].as_str().expect("id");
    assert_eq!(a2.ok(&format!("/bridges/{id}"))["name"], "shared");
    // Both replicas create ports at once: each hands out keys from its own
    // block of the counter; keys stay unique.
    let keys: Vec<u64> = std::thread::scope(|sc| {
        let hs: Vec<_> = [a1.clone(), a2.clone()]
            .into_iter()
            .map(|api| {
                let ports = format!("/bridges/{id}/ports");
                sc.spawn(move || {
                    (0..10)
                        .map(|_| api.create(&ports, &json!({}))["tunnelKey"].as_u64().expect("key"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(keys.iter().copied().collect::<HashSet<_>>().len(), 20, "{keys:?}");
    assert_eq!(a2.count(&format!("/bridges/{id}/ports")), 20);
}

/// Two replicas give ports on one network addresses at once: no address
/// is handed out twice, and when the pool runs out the rest are refused.
#[test]
fn two_replicas_never_give_one_address_twice() {
    let Some(etcd) = midonet_store::testutil::etcd_or_skip() else { return };
    let c1 = TestCluster::start(&etcd.url(), false);
    let c2 = TestCluster::start(&etcd.url(), false);
    let n1 = Api::new(&c1.url().replace("/midonet-api", "/neutron"), None);
    let n2 = Api::new(&c2.url().replace("/midonet-api", "/neutron"), None);
    let net = n1.post("/v2.0/networks", &json!({"network": {"name": "small"}})).expect(201).body;
    let nid = net["network"]["id"].as_str().expect("id").to_string();
    // A /27: 29 addresses in the pool (the gateway takes .1).
    let sub = json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.7.0.0/27"}});
    n1.post("/v2.0/subnets", &sub).expect(201);
    let results: Vec<(u16, serde_json::Value)> = std::thread::scope(|sc| {
        let hs: Vec<_> = [n1.clone(), n2.clone(), n1.clone(), n2.clone()]
            .into_iter()
            .map(|api| {
                let body = json!({"port": {"network_id": nid}});
                sc.spawn(move || {
                    (0..10)
                        .map(|_| {
                            let r = api.post("/v2.0/ports", &body);
                            (r.status, r.body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    let mut addrs = HashSet::new();
    let mut macs = HashSet::new();
    for (status, body) in &results {
        match status {
            201 => {
                let ip = body["port"]["fixed_ips"][0]["ip_address"].as_str().expect("ip");
                assert!(addrs.insert(ip.to_string()), "{ip} handed out twice: {results:#?}");
                assert!(macs.insert(body["port"]["mac_address"].to_string()));
            }
            409 => assert_eq!(body["NeutronError"]["type"], "IpAddressGenerationFailure", "{body}"),
            s => panic!("port create answered {s}: {body}"),
        }
    }
    assert_eq!(addrs.len(), 29, "every address of the pool, once");
    let listed = n2.get(&format!("/v2.0/ports?network_id={nid}")).expect(200).body;
    assert_eq!(listed["ports"].as_array().expect("ports").len(), 29);
}

/// Tokens are valid on every replica (signed with the store's shared key),
/// and a revocation on one reaches the others.
#[test]
fn a_token_from_one_replica_works_on_another_until_revoked_anywhere() {
    let Some(etcd) = midonet_store::testutil::etcd_or_skip() else { return };
    let c1 = TestCluster::start(&etcd.url(), true);
    let c2 = TestCluster::start(&etcd.url(), true);
    let token = c1.admin_token();
    let on2 = Api::new(&c2.url(), Some(token.clone()));
    on2.ok("/bridges");
    let alice = c2.token_for("alice");
    Api::new(&c1.url(), Some(alice.clone())).ok("/bridges");

    // Keystone's DELETE /v3/auth/tokens on replica 1.
    let url = c1.url().replace("/midonet-api", "/neutron/identity/v3/auth/tokens");
    let r = ureq::delete(&url)
        .set("X-Auth-Token", &token)
        .set("X-Subject-Token", &alice)
        .call()
        .expect("revoke");
    assert_eq!(r.status(), 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let on1 = Api::new(&c2.url(), Some(alice));
    loop {
        match on1.get("/bridges").status {
            401 => break,
            s if std::time::Instant::now() > deadline => panic!("still {s} on replica 2"),
            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    on2.ok("/bridges");
}
