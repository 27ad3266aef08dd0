//! What midonetclient 5.2.0 and midonet-cli send, and HTTP details.
mod common;
use common::Api;
use midonet_cluster::testing::TestCluster;
use serde_json::{json, Value};

const V: &str = "application/vnd.org.midonet.";

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no string {k} in {v}")).to_string()
}

fn setup() -> (TestCluster, Api) {
    let c = TestCluster::start("memory:", true);
    let api = Api::new(&c.url(), Some(c.admin_token()));
    (c, api)
}

#[test]
fn python_client_request_shapes_work() {
    let (_c, api) = setup();
    // GET root with the Application media type and a `{}` body.
    let root = api
        .raw(
            "GET",
            "",
            &[("Accept", &format!("{V}Application-v5+json")), ("Content-Type", "application/json")],
            Some("{}"),
        )
        .expect(200);
    assert_eq!(root.content_type.as_deref(), Some(&*format!("{V}Application-v5+json")));
    // POST with the vendor Content-Type; Location absolute; GET Location with vendor Accept.
    let r = api
        .raw(
            "POST",
            "/bridges",
            &[("Content-Type", &format!("{V}Bridge-v4+json"))],
            Some(r#"{"name":"br0","tenantId":"t"}"#),
        )
        .expect(201);
    let loc = r.location.clone().expect("Location");
    assert!(loc.starts_with("http://127.0.0.1:"), "{loc}");
    let got = api
        .raw(
            "GET",
            &loc,
            &[
                ("Accept", &format!("{V}Bridge-v4+json")),
                ("Content-Type", &format!("{V}Bridge-v4+json")),
            ],
            Some("{}"),
        )
        .expect(200);
    assert_eq!(got.content_type.as_deref(), Some(&*format!("{V}Bridge-v4+json")));
    // Collections answer with the collection media type, as a bare array.
    let list = api
        .raw("GET", "/bridges", &[("Accept", &format!("{V}collection.Bridge-v4+json"))], Some("{}"))
        .expect(200);
    assert_eq!(list.content_type.as_deref(), Some(&*format!("{V}collection.Bridge-v4+json")));
    assert!(list.body.is_array());
    // PUT the entire fetched DTO (uri, links and read-only fields included).
    let mut dto = got.body.clone();
    dto["name"] = json!("br1");
    api.raw(
        "PUT",
        &loc,
        &[("Content-Type", &format!("{V}Bridge-v4+json"))],
        Some(&dto.to_string()),
    )
    .expect(204);
    // A router port exactly as the library posts it; link with PortLink-v1 and the whole DTO.
    let rt = api.create("/routers", &json!({"name": "rt0", "tenantId": "t"}));
    let rp = api.raw("POST", &s(&rt, "ports"), &[("Content-Type", &format!("{V}Port-v3+json"))],
        Some(r#"{"type":"Router","portAddress":"10.0.0.1","networkAddress":"10.0.0.0","networkLength":24,"portMac":"02:00:00:aa:bb:cc"}"#)).expect(201);
    let bp = api.create(&s(&got.body, "ports"), &json!({"type": "Bridge"}));
    let mut link = rp.body.clone();
    link["peerId"] = bp["id"].clone();
    api.raw(
        "POST",
        &s(&rp.body, "link"),
        &[("Content-Type", &format!("{V}PortLink-v1+json"))],
        Some(&link.to_string()),
    )
    .expect(201);
    // The CLI then PUTs the full port DTO including peerId.
    let full = api.ok(&s(&rp.body, "uri"));
    api.put(&s(&rp.body, "uri"), &full).expect(204);
    // add_chain_rule with ~30 keys, many null.
    let ch = api.create("/chains", &json!({"name": "ch0", "tenantId": "t"}));
    let body = r#"{"type":"accept","nwSrcAddress":null,"nwSrcLength":null,"invNwSrc":false,"nwDstAddress":"10.0.0.0","nwDstLength":24,"invNwDst":null,"tpSrc":null,"invTpSrc":null,"tpDst":{"start":22,"end":22},"invTpDst":null,"dlSrc":null,"invDlSrc":false,"dlDst":null,"invDlDst":false,"ipAddrGroupSrc":null,"invIpAddrGroupSrc":false,"ipAddrGroupDst":null,"invIpAddrGroupDst":false,"nwProto":6,"invNwProto":false,"dlType":null,"invDlType":false,"jumpChainId":null,"jumpChainName":null,"matchForwardFlow":false,"matchReturnFlow":false,"position":null,"properties":null}"#;
    let rule = api
        .raw("POST", &s(&ch, "rules"), &[("Content-Type", &format!("{V}Rule-v2+json"))], Some(body))
        .expect(201);
    assert_eq!(rule.body["position"], 1);
    assert_eq!(rule.body["tpDst"]["start"], 22);
    // DELETE with a `{}` body.
    api.raw("DELETE", &s(&rule.body, "uri"), &[("Content-Type", "application/json")], Some("{}"))
        .expect(204);
    // Route as the CLI sends it: numbers as strings, no type, no weight.
    let route = api.create(&s(&rt, "routes"), &json!({"srcNetworkAddr":"0.0.0.0","srcNetworkLength":"0","dstNetworkAddr":"10.1.0.0","dstNetworkLength":"24","nextHopPort": rp.body["id"]}));
    assert_eq!(route["type"], "Normal");
    assert_eq!(route["weight"], 100);
    // Rule from the CLI: strings for numbers, position "1".
    let r2 = api.create(&s(&ch, "rules"), &json!({"type":"drop","invNwSrc":false,"nwSrcAddress":"192.168.0.0","nwSrcLength":"16","position":"1"}));
    assert_eq!(r2["nwSrcLength"], 16);
    // GET /routers/<bridge id> is a 404 (the CLI probes that way).
    api.get(&format!("/routers/{}", s(&got.body, "id"))).expect(404);
}

#[test]
fn media_types_and_verbs() {
    let (_c, api) = setup();
    // Plain JSON in, plain JSON out.
    let r = api.raw("GET", "/bridges", &[("Accept", "application/json")], None).expect(200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    api.raw("GET", "/bridges", &[("Accept", "*/*")], None).expect(200);
    // Unacceptable Accept: 406; unsupported Content-Type: 415.
    assert_eq!(api.raw("GET", "/bridges", &[("Accept", "text/html")], None).status, 406);
    let r = api.raw(
        "POST",
        "/bridges",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("name=x"),
    );
    assert_eq!(r.status, 415);
    assert_eq!(r.body["code"], 415);
    // Wrong verb: 405 with a JSON error body.
    let r = api.raw("PATCH", "/bridges", &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.body["code"], 405, "{}", r.text);
    api.raw(
        "POST",
        "/routes/00000000-0000-0000-0000-000000000001",
        &[("Content-Type", "application/json")],
        Some("{}"),
    )
    .expect(405);
    // Trace without a port is a client error, not a server one.
    let t = api.post("/trace", &json!({}));
    assert!((400..500).contains(&t.status), "{}: {}", t.status, t.text);
}

#[test]
fn openapi_document_lists_every_route() {
    let (_c, api) = setup();
    let doc = Api::new(&api.base, None).ok("/openapi.json");
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/midonet-api/bridges",
        "/midonet-api/bridges/{id}",
        "/midonet-api/bridges/{id}/ports",
        "/midonet-api/routers/{id}/routes",
        "/midonet-api/ports/{id}/link",
        "/midonet-api/chains/{id}/rules",
        "/midonet-api/hosts/{id}/ports",
        "/midonet-api/tunnel_zones/{id}/hosts",
        "/midonet-api/bridges/{id}/dhcp/{subnet}/hosts",
        "/midonet-api/login",
        "/midonet-api/trace",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(paths["/midonet-api/bridges"]["post"]["requestBody"].is_object());
    let schema = &doc["components"]["schemas"]["Port_v3"]["properties"];
    for f in ["portAddress", "tunnelKey", "peerId", "uri"] {
        assert!(schema.get(f).is_some(), "Port schema lacks {f}");
    }
}

#[test]
fn metrics_count_requests_and_are_served_without_auth() {
    let (c, api) = setup();
    api.ok("/bridges");
    api.get("/bridges/00000000-0000-0000-0000-000000000001").expect(404);
    let addr = c.addr();
    let m = Api::new(&format!("http://{addr}"), None).get("/metrics").expect(200);
    assert!(m.text.contains("midonet_api_requests_total{method=\"GET\",route=\"/midonet-api/bridges\",status=\"200\"} 1"), "{}", m.text);
    assert!(m.text.contains("route=\"/midonet-api/bridges/{id}\",status=\"404\""), "{}", m.text);
    assert!(m.text.contains("midonet_store_txn_conflicts_total"));
}

#[test]
fn public_url_replaces_the_host_header_in_links() {
    let mut cfg = midonet_cluster::Config {
        store: "memory:".into(),
        public_url: "https://cloud.example/midonet-api".into(),
        ..Default::default()
    };
    cfg.auth.enabled = false;
    let c = TestCluster::start_with(cfg);
    let api = Api::new(&c.url(), None);
    let root = api.ok("");
    assert_eq!(root["bridges"], "https://cloud.example/midonet-api/bridges");
    let r = api.post("/bridges", &json!({})).expect(201);
    assert!(r
        .location
        .as_deref()
        .is_some_and(|l| l.starts_with("https://cloud.example/midonet-api/bridges/")));
}

/// A write refused before its body is read (here a 401: no token) still
/// has its body read, so the connection stays usable: the next request on
/// it gets its answer. The client sends the headers first and the body
/// after a pause, as a client streaming a body does; before the server read
/// every write's body up front, it answered at once and closed the
/// connection after, and the client's next request on it found it closed.
#[test]
fn a_refused_write_leaves_its_connection_usable() {
    use std::io::{BufRead, BufReader, Read, Write};
    let c = TestCluster::start("memory:", true);
    let addr = c.url().trim_start_matches("http://").split('/').next().expect("host").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
    let body = r#"{"name":"refused"}"#;
    write!(
        conn,
        "POST /midonet-api/bridges HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("headers");
    std::thread::sleep(std::time::Duration::from_millis(200));
    conn.write_all(body.as_bytes()).expect("body");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let read_response = |reader: &mut BufReader<std::net::TcpStream>| -> (String, String) {
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
        }
        let mut b = vec![0; len];
        reader.read_exact(&mut b).expect("response body");
        (status, String::from_utf8_lossy(&b).into_owned())
    };
    let (status, _) = read_response(&mut reader);
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    // The same connection answers the next request (a 401 too: no token).
    write!(conn, "GET /midonet-api/bridges HTTP/1.1\r\nHost: {addr}\r\n\r\n")
        .expect("second request");
    let (status, body) = read_response(&mut reader);
    assert!(status.starts_with("HTTP/1.1 401"), "{status} {body}");
}
