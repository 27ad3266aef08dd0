mod common;
use common::Api;
use midonet_cluster::testing::TestCluster;
use serde_json::json;

#[test]
fn bridge_crud_round_trip() {
    let c = TestCluster::start("memory:", true);
    let api = Api::new(&c.url(), Some(c.admin_token()));
    let root = api.ok("");
    assert_eq!(root["bridges"], format!("{}/bridges", c.url()));
    let b = api.create("/bridges", &json!({"name": "br0", "tenantId": "t"}));
    let uri = b["uri"].as_str().expect("uri").to_string();
    assert_eq!(api.ok(&uri)["name"], "br0");
    let mut dto = b.clone();
    dto["name"] = json!("br1");
    api.put(&uri, &dto).expect(204);
    assert_eq!(api.ok(&uri)["name"], "br1");
    assert_eq!(api.count("/bridges"), 1);
    api.delete(&uri).expect(204);
    api.get(&uri).expect(404);
}
