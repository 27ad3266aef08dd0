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
        if path.starts_with("http") { path.to_string() } else { format!("{}{}", self.base, path) }
    }

    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
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
            .flat_map(|n| resp.all(n).into_iter().map(move |v| (n.clone(), v.to_string())).collect::<Vec<_>>())
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
        assert!(r.location.as_deref().is_some_and(|l| l.starts_with("http://")), "absolute Location: {:?}", r.location);
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
        store.range(b"/").await.expect("range").kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
    })
}
