//! A small blocking HTTP client for the API tests (ureq), and helpers.
#![allow(dead_code)]

use serde_json::Value;

/// One response: status, headers we look at, and the JSON body (Null if
/// empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Asserts the status and returns self, showing the body on mismatch.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self
    }
    /// The `field` of an error body.
    pub fn field(&self) -> Option<&str> {
        self.body.get("field").and_then(Value::as_str)
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("body has an id").to_string()
    }
}

/// Client bound to a base URL and an optional token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> Api {
        Api { base: base.to_string(), token, agent: ureq::AgentBuilder::new().build() }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let mut req = self.agent.request(method, &self.url(path));
        if let Some(t) = &self.token {
            req = req.set("X-Auth-Token", t);
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: transport error {e}"),
        };
        let status = resp.status();
        let headers: Vec<(String, String)> = resp
            .headers_names()
            .iter()
            .flat_map(|n| {
                resp.all(n).into_iter().map(move |v| (n.clone(), v.to_string())).collect::<Vec<_>>()
            })
            .collect();
        let location = resp.header("location").map(str::to_string);
        let content_type = resp.header("content-type").map(str::to_string);
        let text = resp.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text, location, content_type, headers }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, &[], None)
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.raw("DELETE", path, &[], None)
    }
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.raw("POST", path, &[("Content-Type", "application/json")], Some(&body.to_string()))
    }
    pub fn put(&self, path: &str, body: &Value) -> Resp {
        self.raw("PUT", path, &[("Content-Type", "application/json")], Some(&body.to_string()))
    }
    /// POST that must give 201; returns the created DTO.
    #[track_caller]
    pub fn create(&self, path: &str, body: &Value) -> Value {
        let r = self.post(path, body).expect(201);
        assert!(
            r.location.as_deref().is_some_and(|l| l.starts_with("http://")),
            "absolute Location: {:?}",
            r.location
        );
        r.body
    }
    /// GET that must give 200.
    #[track_caller]
    pub fn ok(&self, path: &str) -> Value {
        self.get(path).expect(200).body
    }
    /// Number of items of a list.
    #[track_caller]
    pub fn count(&self, path: &str) -> usize {
        self.ok(path).as_array().expect("a list").len()
    }
}

/// Every key/value in the store (to check "nothing was written").
pub fn dump(c: &midonet_cluster::testing::TestCluster) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = c.cluster().store.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async move {
        store
            .range(b"/")
            .await
            .expect("range")
            .kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect()
    })
}

/// Registers a host (admin extension) and returns its id.
pub fn host(api: &Api, name: &str) -> String {
    api.create("/hosts", &serde_json::json!({"name": name, "addresses": ["10.0.0.5"]}))["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// A core scenario used against every backend: builds a small topology
/// through the API and checks the results. Returns nothing; panics on
/// failure.
pub fn core_scenario(api: &Api) {
    use serde_json::json;
    let b = api.create("/bridges", &json!({"name": "br0", "tenantId": "t1"}));
    let bid = b["id"].as_str().expect("id").to_string();
    let bp = api.create(&format!("/bridges/{bid}/ports"), &json!({"type": "Bridge"}));
    assert!(bp["tunnelKey"].as_u64().expect("tunnel key") >= 16);
    let r = api.create("/routers", &json!({"name": "rt0", "tenantId": "t1"}));
    let rid = r["id"].as_str().expect("id").to_string();
    let rp = api.create(
        &format!("/routers/{rid}/ports"),
        &json!({"type": "Router", "portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": "24"}),
    );
    assert!(rp["portMac"].as_str().expect("mac assigned").starts_with("02:"));
    assert_ne!(rp["tunnelKey"], bp["tunnelKey"]);
    let routes = api.ok(&format!("/routers/{rid}/routes"));
    assert_eq!(routes.as_array().expect("list").len(), 1, "only the local route: {routes}");
    // Link and check both sides.
    let mut body = rp.clone();
    body["peerId"] = bp["id"].clone();
    api.post(rp["link"].as_str().expect("link"), &body).expect(201);
    assert_eq!(api.ok(bp["uri"].as_str().expect("uri"))["peerId"], rp["id"]);
    // Linking again to another port is a conflict.
    let bp2 = api.create(&format!("/bridges/{bid}/ports"), &json!({}));
    let lr = api.post(rp["link"].as_str().expect("link"), &json!({"peerId": bp2["id"]}));
    assert_eq!(lr.status, 409, "{}", lr.text);
    // Chain with rules in position order.
    let c = api.create("/chains", &json!({"name": "ch0", "tenantId": "t1"}));
    let rules = c["rules"].as_str().expect("rules link").to_string();
    let r1 = api.create(&rules, &json!({"type": "accept", "nwProto": "6"}));
    let r2 = api.create(&rules, &json!({"type": "drop", "position": "1"}));
    let list = api.ok(&rules);
    assert_eq!(list[0]["id"], r2["id"]);
    assert_eq!(list[1]["id"], r1["id"]);
    assert_eq!(list[1]["position"], 2);
    // A chain in use as a filter can be deleted: the filter is cleared in
    // the same transaction (MidoNet's CLEAR binding), and its rules go.
    let mut bdto = api.ok(b["uri"].as_str().expect("uri"));
    bdto["inboundFilterId"] = c["id"].clone();
    api.put(b["uri"].as_str().expect("uri"), &bdto).expect(204);
    assert_eq!(api.ok(b["uri"].as_str().expect("uri"))["inboundFilterId"], c["id"]);
    api.delete(c["uri"].as_str().expect("uri")).expect(204);
    assert!(api.ok(b["uri"].as_str().expect("uri"))["inboundFilterId"].is_null());
    api.get(r1["uri"].as_str().expect("uri")).expect(404);
    // Deleting the bridge unlinks the router port and drops its ports.
    api.delete(b["uri"].as_str().expect("uri")).expect(204);
    assert!(api.ok(rp["uri"].as_str().expect("uri"))["peerId"].is_null());
    api.get(bp["uri"].as_str().expect("uri")).expect(404);
    api.delete(&format!("/routers/{rid}")).expect(204);
    assert_eq!(api.count("/ports"), 0);
}
