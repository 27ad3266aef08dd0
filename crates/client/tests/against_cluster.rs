//! The client against a real in-process cluster: login and re-login,
//! discovery, CRUD through links, and error bodies.

use midonet_client::{Auth, Client, ClientError};
use midonet_cluster::testing::TestCluster;
use serde_json::json;

fn admin(c: &TestCluster) -> Client {
    Client::new(
        &c.url(),
        Auth::Password {
            user: "admin".into(),
            password: "admin".into(),
            project: Some("admin".into()),
        },
    )
}

#[test]
fn logs_in_lazily_and_again_after_a_stale_token() {
    let c = TestCluster::start("memory:", true);
    let client = admin(&c);
    assert!(client.token().is_none(), "no I/O before the first request");
    assert!(client
        .list(&client.root_link("bridges").expect("bridges link"))
        .expect("list")
        .is_empty());
    let first = client.token().expect("logged in");

    client.set_token(Some("stale-token".into()));
    let root = client.root().expect("root is cached");
    assert!(root["bridges"].is_string());
    // A request with the stale token gets 401; the client logs in once more.
    client.list("bridges").expect("re-login and retry");
    let second = client.token().expect("token");
    assert_ne!(second, "stale-token");
    assert!(!second.is_empty() && !first.is_empty());
}

#[test]
fn wrong_password_and_missing_credentials_are_distinct_errors() {
    let c = TestCluster::start("memory:", true);
    let bad = Client::new(
        &c.url(),
        Auth::Password { user: "admin".into(), password: "nope".into(), project: None },
    );
    match bad.root() {
        Err(ClientError::Login { user, error }) => {
            assert_eq!(user, "admin");
            assert_eq!(error.status, 401);
        }
        other => panic!("expected a login error, got {other:?}"),
    }
    let none = Client::new(&c.url(), Auth::None);
    match none.root() {
        Err(e @ ClientError::Unauthorized { .. }) => assert_eq!(e.status(), Some(401)),
        other => panic!("expected 401, got {other:?}"),
    }
    // A token from a real login works on its own.
    let tok = c.admin_token();
    let by_token = Client::new(&c.url(), Auth::Token(tok));
    assert!(by_token.root().expect("root")["routers"].is_string());
}

#[test]
fn crud_follows_location_and_links() {
    let c = TestCluster::start("memory:", false);
    let client = Client::new(&c.url(), Auth::None);
    let bridges = client.root_link("bridges").expect("link");
    let br = client.create(&bridges, &json!({"name": "b0", "tenantId": "t"})).expect("create");
    let id = br["id"].as_str().expect("id").to_owned();
    assert_eq!(br["name"], "b0");
    let uri = client.template("bridgeTemplate", &id).expect("template");
    assert_eq!(br["uri"].as_str(), Some(uri.as_str()));

    let mut whole = client.get(&uri).expect("get");
    whole["name"] = json!("b1");
    assert_eq!(client.update(&uri, &whole).expect("update")["name"], "b1");

    let port = client
        .create(br["ports"].as_str().expect("ports link"), &json!({"type": "Bridge"}))
        .expect("port");
    assert_eq!(port["deviceId"], id.as_str());
    assert_eq!(client.list(br["ports"].as_str().expect("ports link")).expect("ports").len(), 1);

    client.delete(&uri).expect("delete");
    let err = client.get(&uri).expect_err("gone");
    assert_eq!(err.status(), Some(404));
    assert!(matches!(err, ClientError::Api { .. }));
}

#[test]
fn server_error_body_is_kept() {
    let c = TestCluster::start("memory:", false);
    let client = Client::new(&c.url(), Auth::None);
    let r = client.create("routers", &json!({"name": "r"})).expect("router");
    let err = client
        .create(r["ports"].as_str().expect("ports link"), &json!({"type": "Router", "portAddress": "x.y", "networkAddress": "10.0.0.0", "networkLength": 24}))
        .expect_err("bad address");
    let api = err.api_error().expect("an API error");
    assert_eq!(api.status, 400);
    assert_eq!(api.field.as_deref(), Some("portAddress"));
    assert!(api.body.is_some());
    assert!(err.to_string().starts_with("400 Bad Request: field `portAddress`"), "{err}");
}

/// A base URL on which nothing listens (the port was bound, then freed).
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}/midonet-api")
}

#[test]
fn a_replica_that_refuses_is_passed_over_and_nothing_is_sent_twice() {
    let c = TestCluster::start("memory:", true);
    let dead = dead_url();
    let auth = admin(&c).auth().clone();
    let client = Client::new(&format!("{dead}, {}/", c.url()), auth);
    assert_eq!(client.base_urls(), [dead.clone(), c.url()]);
    assert_eq!(client.base_url(), dead, "the first replica until one fails");

    // Login and the POST are refused by the first replica and answered by
    // the second, which is then used.
    let br = client.create("bridges", &json!({"name": "once", "tenantId": "t"})).expect("create");
    assert_eq!(client.base_url(), c.url());
    // A link on the dead replica is moved onto the live one.
    let id = br["id"].as_str().expect("id");
    let on_dead = format!("{dead}/bridges/{id}");
    assert_eq!(client.get(&on_dead).expect("moved to the live replica")["name"], "once");
    assert_eq!(client.list("bridges").expect("list").len(), 1, "created exactly once");

    // Nobody answers: one error naming every replica tried.
    let nobody = Client::new(&format!("{dead},{}", dead_url()), Auth::None);
    let err = nobody.list("bridges").expect_err("no replica");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert_eq!(text.matches(dead.as_str()).count(), 2, "in the list and with its reason: {text}");
    assert!(text.contains("refused"), "{text}");
}
