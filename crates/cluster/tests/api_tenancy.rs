//! Auth and tenant isolation.
mod common;
use common::Api;
use midonet_cluster::testing::TestCluster;
use serde_json::{json, Value};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no string {k} in {v}")).to_string()
}

#[test]
fn login_gives_cookie_and_token_and_401_otherwise() {
    let c = TestCluster::start("memory:", true);
    let anon = Api::new(&c.url(), None);
    // No token: 401 with WWW-Authenticate, everywhere but login and openapi.
    for path in ["", "/bridges", "/system_state"] {
        let r = anon.get(path);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{path}");
    }
    anon.get("/openapi.json").expect(200);
    // Bad password.
    let bad =
        anon.raw("POST", "/login", &[("Authorization", "Basic YWRtaW46bm9wZQ==")], Some("{}"));
    assert_eq!(bad.status, 401);
    // admin:admin, with X-Auth-Project as midonetclient sends it.
    let r = anon.raw(
        "POST",
        "/login",
        &[("Authorization", "Basic YWRtaW46YWRtaW4="), ("X-Auth-Project", "admin")],
        Some("{}"),
    );
    let r = r.expect(200);
    let cookie = r.header("set-cookie").expect("Set-Cookie").to_string();
    // The client takes the text between the first '=' and the first ';'.
    let token = cookie.split_once('=').expect("=").1.split(';').next().expect(";").to_string();
    assert!(cookie.contains("Expires="), "{cookie}");
    assert_eq!(r.body["key"], json!(token));
    assert_eq!(r.content_type.as_deref(), Some("application/vnd.org.midonet.Token-v1+json"));
    let api = Api::new(&c.url(), Some(token));
    api.ok("/bridges");
    // A stale token: 401, log in again, retry: the client's re-login flow.
    let stale = Api::new(&c.url(), Some("0123456789abcdef".into()));
    stale.get("").expect(401);
    let again = anon
        .raw("POST", "/login", &[("Authorization", "Basic YWRtaW46YWRtaW4=")], Some("{}"))
        .expect(200);
    Api::new(&c.url(), Some(again.body["key"].as_str().expect("key").into())).get("").expect(200);
}

#[test]
fn no_auth_mode_needs_no_token_and_login_still_works() {
    let c = TestCluster::start("memory:", false);
    let anon = Api::new(&c.url(), None);
    anon.create("/bridges", &json!({"name": "b"}));
    anon.create("/hosts", &json!({"name": "h"}));
    let r = anon.raw("POST", "/login", &[("Authorization", "Basic eDp5")], Some("{}")).expect(200);
    assert!(r.header("set-cookie").is_some());
}

#[test]
fn tenants_see_and_change_only_their_own_objects() {
    let c = TestCluster::start("memory:", true);
    let admin = Api::new(&c.url(), Some(c.admin_token()));
    let alice = Api::new(&c.url(), Some(c.token_for("alice")));
    let bob = Api::new(&c.url(), Some(c.token_for("bob")));

    // Forced tenant on create; a different explicit tenant is 403.
    let ab = alice.create("/bridges", &json!({"name": "a-br"}));
    assert_eq!(ab["tenantId"], "tenant-a");
    alice.post("/bridges", &json!({"name": "x", "tenantId": "tenant-b"})).expect(403);
    alice.create("/bridges", &json!({"name": "y", "tenantId": "tenant-a"}));
    let ap = alice.create(&s(&ab, "ports"), &json!({}));
    let ac = alice.create("/chains", &json!({"name": "a-ch"}));
    let ar = alice.create(&s(&ac, "rules"), &json!({"type": "drop"}));
    let bb = bob.create("/bridges", &json!({"name": "b-br"}));
    let bp = bob.create(&s(&bb, "ports"), &json!({}));

    // Lists are filtered; admin sees all.
    assert_eq!(alice.count("/bridges"), 2);
    assert_eq!(bob.count("/bridges"), 1);
    assert_eq!(admin.count("/bridges"), 3);
    assert_eq!(alice.count("/ports"), 1);
    assert_eq!(bob.count("/ports"), 1);
    assert_eq!(admin.count("/ports"), 2);
    assert_eq!(admin.count("/bridges?tenant_id=tenant-b"), 1);

    // Another tenant's objects are 404 for every verb, and not changed.
    for uri in [
        s(&ab, "uri"),
        s(&ap, "uri"),
        s(&ac, "uri"),
        s(&ar, "uri"),
        s(&ac, "rules"),
        s(&ab, "ports"),
    ] {
        bob.get(&uri).expect(404);
    }
    let mut dto = alice.ok(&s(&ab, "uri"));
    dto["name"] = json!("hijacked");
    bob.put(&s(&ab, "uri"), &dto).expect(404);
    bob.delete(&s(&ab, "uri")).expect(404);
    bob.delete(&s(&ap, "uri")).expect(404);
    bob.delete(&s(&ar, "uri")).expect(404);
    bob.post(&s(&ab, "ports"), &json!({})).expect(404);
    bob.post(&s(&ac, "rules"), &json!({"type": "accept"})).expect(404);
    assert_eq!(alice.ok(&s(&ab, "uri"))["name"], "a-br");
    assert_eq!(alice.count(&s(&ac, "rules")), 1);
    // Linking to another tenant's port: not found.
    bob.post(&s(&bp, "link"), &json!({"peerId": ap["id"]})).expect(404);
    // Referencing another tenant's chain: 400 as if it did not exist.
    let mut bdto = bob.ok(&s(&bb, "uri"));
    bdto["inboundFilterId"] = ac["id"].clone();
    assert_eq!(bob.put(&s(&bb, "uri"), &bdto).expect(400).field(), Some("inboundFilterId"));
    // A tenant cannot move its object to another tenant; admin can.
    let mut adto = alice.ok(&s(&ab, "uri"));
    adto["tenantId"] = json!("tenant-b");
    alice.put(&s(&ab, "uri"), &adto).expect(403);
    // PUT without tenantId keeps it.
    let mut nt = alice.ok(&s(&ab, "uri"));
    nt.as_object_mut().expect("obj").remove("tenantId");
    nt["name"] = json!("renamed");
    alice.put(&s(&ab, "uri"), &nt).expect(204);
    assert_eq!(admin.ok(&s(&ab, "uri"))["tenantId"], "tenant-a");

    // Admin-only resources.
    alice.get("/hosts").expect(403);
    alice.post("/hosts", &json!({"name": "h"})).expect(403);
    alice.post("/tunnel_zones", &json!({"name": "tz"})).expect(403);
    alice.get("/tunnel_zones").expect(403);
    // Tenants list: only their own.
    let ts = alice.ok("/tenants");
    let ids: Vec<&str> =
        ts.as_array().expect("list").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids, vec!["tenant-a"]);
    bob.get("/tenants/tenant-a").expect(404);
    // Admin changes anything.
    admin.put(&s(&ab, "uri"), &adto).expect(204);
    assert_eq!(bob.ok(&s(&ab, "uri"))["tenantId"], "tenant-b");
    alice.get(&s(&ab, "uri")).expect(404);
}
