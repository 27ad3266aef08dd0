//! Data and the tunnel key counter survive a restart on the embedded file.
mod common;
use common::Api;
use midonet_cluster::db::{FIRST_TUNNEL_KEY, KEY_BLOCK};
use midonet_cluster::testing::TestCluster;
use serde_json::json;

#[test]
fn restart_on_the_same_file_keeps_data_and_tunnel_key_counter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("embedded:{}", dir.path().join("cluster.redb").display());
    let (bid, keys) = {
        let c = TestCluster::start(&url, true);
        let api = Api::new(&c.url(), Some(c.admin_token()));
        let b = api.create("/bridges", &json!({"name": "persist"}));
        let ports = b["ports"].as_str().expect("ports").to_string();
        let keys: Vec<u64> = (0..3)
            .map(|_| api.create(&ports, &json!({}))["tunnelKey"].as_u64().expect("key"))
            .collect();
        c.stop();
        (b["id"].as_str().expect("id").to_string(), keys)
    };
    let c = TestCluster::start(&url, true);
    let api = Api::new(&c.url(), Some(c.admin_token()));
    let b = api.ok(&format!("/bridges/{bid}"));
    assert_eq!(b["name"], "persist");
    assert_eq!(api.count(b["ports"].as_str().expect("ports")), 3);
    let next = api.create(b["ports"].as_str().expect("ports"), &json!({}))["tunnelKey"]
        .as_u64()
        .expect("key");
    // The first process took keys in one block from the counter; the new
    // one takes the next block: no key is handed out twice.
    assert!(next > *keys.iter().max().expect("keys"), "counter continues after restart");
    assert_eq!(next, u64::from(FIRST_TUNNEL_KEY + KEY_BLOCK), "the next block");
    // Tokens do not survive a restart (they live in memory): old ones are 401.
}
