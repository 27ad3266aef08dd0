//! The Keystone v3 identity endpoint (`/neutron/identity` on the main
//! port), over HTTP, as openstacksdk and tempest use it.
mod common;
use common::{Api, Resp};
use midonet_cluster::config::{Config, TenantConfig};
use midonet_cluster::testing::{test_users, TestCluster};
use serde_json::{json, Value};

const KS: &str = "/neutron/identity";

/// admin/admin (admin), alice/alice (tenant-a, named "Tenant A"),
/// bob/bob (tenant-b), auth on.
fn cluster() -> TestCluster {
    TestCluster::start_with(config())
}

fn config() -> Config {
    let mut cfg = Config { store: "memory:".into(), ..Config::default() };
    cfg.auth.users = test_users();
    cfg.tenants.push(TenantConfig { id: "tenant-a".into(), name: "Tenant A".into() });
    cfg
}

/// The server root, `http://127.0.0.1:<port>`.
fn root(c: &TestCluster) -> String {
    format!("http://{}", c.addr())
}

fn password_auth(user: &str, password: &str, scope: Option<Value>) -> Value {
    let mut b = json!({"auth": {"identity": {
        "methods": ["password"],
        "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
    }}});
    if let Some(s) = scope {
        b["auth"]["scope"] = s;
    }
    b
}

fn project_name(name: &str) -> Value {
    json!({"project": {"name": name, "domain": {"name": "Default"}}})
}

/// `POST /v3/auth/tokens`.
fn tokens(c: &TestCluster, body: &Value) -> Resp {
    Api::new(&root(c), None).post(&format!("{KS}/v3/auth/tokens"), body)
}

/// A token for a user, which must be issued; returns the token and its body.
#[track_caller]
fn login(c: &TestCluster, user: &str, scope: Option<Value>) -> (String, Value) {
    let r = tokens(c, &password_auth(user, user, scope)).expect(201);
    let token = r.header("x-subject-token").expect("X-Subject-Token").to_string();
    (token, r.body["token"].clone())
}

/// A client of the identity endpoint with a token.
fn ks(c: &TestCluster, token: &str) -> Api {
    Api::new(&format!("{}{KS}", root(c)), Some(token.to_string()))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect()
}

/// Length of the list `key` of a collection.
trait CountIn {
    fn count_in(&self, path: &str, key: &str) -> usize;
}

impl CountIn for Api {
    #[track_caller]
    fn count_in(&self, path: &str, key: &str) -> usize {
        self.ok(path)[key].as_array().expect("a list").len()
    }
}

#[track_caller]
fn keystone_error(r: &Resp, code: u16) {
    assert_eq!(r.status, code, "{}", r.text);
    assert_eq!(r.body["error"]["code"], json!(code), "{}", r.text);
    assert!(r.body["error"]["title"].is_string(), "{}", r.text);
    assert!(r.body["error"]["message"].is_string(), "{}", r.text);
}

#[test]
fn version_documents() {
    let c = cluster();
    let anon = Api::new(&root(&c), None);
    let href = format!("{}{KS}/v3/", root(&c));
    for path in [KS.to_string(), format!("{KS}/")] {
        let r = anon.get(&path).expect(300);
        let v = &r.body["versions"]["values"][0];
        assert_eq!(v["id"], "v3.14", "{path}");
        assert_eq!(v["links"][0]["href"], json!(href), "{path}");
    }
    for path in [format!("{KS}/v3"), format!("{KS}/v3/")] {
        let r = anon.get(&path).expect(200);
        let v = &r.body["version"];
        assert_eq!((v["id"].as_str(), v["status"].as_str()), (Some("v3.14"), Some("stable")));
        assert_eq!(v["links"][0], json!({"rel": "self", "href": href}));
        assert_eq!(v["media-types"][0]["type"], "application/vnd.openstack.identity-v3+json");
    }
    keystone_error(&anon.get(&format!("{KS}/v3/nothing")), 404);
}

#[test]
fn password_auth_scopes_tokens_to_projects() {
    let c = cluster();
    let base = root(&c);
    // An admin, scoped to the admin project by name.
    let r = tokens(&c, &password_auth("admin", "admin", Some(project_name("admin")))).expect(201);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let token = r.header("x-subject-token").expect("X-Subject-Token");
    // Signed and self-contained (valid on every replica), about as long as
    // a Fernet token, and safe in a header or a cookie.
    assert!(token.len() < 256, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{token}");
    let t = &r.body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["id"], "admin");
    assert_eq!(t["user"]["domain"], json!({"id": "default", "name": "Default"}));
    assert_eq!(t["project"]["id"], "admin");
    assert_eq!(names(&t["roles"]), ["admin", "member", "reader"]);
    let expires = t["expires_at"].as_str().expect("expires_at");
    assert!(expires.ends_with('Z') && expires.len() == 27, "{expires}");
    let cat = t["catalog"].as_array().expect("catalog");
    let url = |kind: &str| {
        let s = cat.iter().find(|s| s["type"] == kind).expect("service");
        s["endpoints"][0]["url"].as_str().expect("url").to_string()
    };
    assert_eq!(url("network"), format!("{base}/neutron/"));
    assert_eq!(url("identity"), format!("{base}{KS}"));
    // Unscoped and system-scoped: the admin project; by id: any project.
    assert_eq!(login(&c, "admin", None).1["project"]["id"], "admin");
    assert_eq!(
        login(&c, "admin", Some(json!({"system": {"all": true}}))).1["project"]["id"],
        "admin"
    );
    let (_, t) = login(&c, "admin", Some(json!({"project": {"id": "tenant-b"}})));
    assert_eq!(
        t["project"],
        json!({"id": "tenant-b", "name": "tenant-b", "domain": {"id": "default", "name": "Default"}})
    );
    // A tenant user: its tenant, unscoped or by name, with member roles.
    let (_, t) = login(&c, "alice", None);
    assert_eq!(
        (t["project"]["id"].as_str(), t["project"]["name"].as_str()),
        (Some("tenant-a"), Some("Tenant A"))
    );
    assert_eq!(names(&t["roles"]), ["member", "reader"]);
    assert_eq!(login(&c, "alice", Some(project_name("Tenant A"))).1["project"]["id"], "tenant-a");
    // Another tenant's project, the admin project, the system: 401.
    for scope in [project_name("tenant-b"), project_name("admin"), json!({"system": {"all": true}})]
    {
        keystone_error(&tokens(&c, &password_auth("alice", "alice", Some(scope))), 401);
    }
    // Unknown projects, even for admins.
    keystone_error(&tokens(&c, &password_auth("admin", "admin", Some(project_name("nope")))), 401);
    // Wrong password, unknown user, another domain: Keystone's one answer.
    let expected = json!({"error": {"code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}});
    for body in [
        password_auth("admin", "nope", None),
        password_auth("eve", "eve", None),
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
            {"name": "admin", "domain": {"name": "Other"}, "password": "admin"}}}}}),
    ] {
        let r = tokens(&c, &body);
        assert_eq!((r.status, &r.body), (401, &expected), "{body}");
        assert!(r.header("x-subject-token").is_none());
    }
    // Malformed: 400 naming the field.
    let r = tokens(&c, &json!({"auth": {"identity": {"methods": ["password"]}}}));
    keystone_error(&r, 400);
    assert!(
        r.body["error"]["message"].as_str().is_some_and(|m| m.contains("auth.identity.password")),
        "{}",
        r.text
    );
    let r = Api::new(&root(&c), None).raw(
        "POST",
        &format!("{KS}/v3/auth/tokens"),
        &[],
        Some("{not json"),
    );
    keystone_error(&r, 400);
}

#[test]
fn keystone_tokens_work_on_the_midonet_api() {
    let c = cluster();
    let (admin, _) = login(&c, "admin", None);
    let api = Api::new(&c.url(), Some(admin.clone()));
    api.create("/bridges", &json!({"name": "a", "tenantId": "tenant-a"}));
    api.create("/bridges", &json!({"name": "b", "tenantId": "tenant-b"}));
    assert_eq!(api.count("/bridges"), 2);
    let (alice, _) = login(&c, "alice", Some(project_name("Tenant A")));
    let bridges = Api::new(&c.url(), Some(alice)).ok("/bridges");
    assert_eq!(names(&bridges), ["a"], "a tenant sees its tenant only");
    // Rescoping with the token method: same user and expiry, new project.
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": admin}},
                      "scope": {"project": {"id": "tenant-b"}}}});
    let r = tokens(&c, &body).expect(201);
    assert_eq!(r.body["token"]["project"]["id"], "tenant-b");
    assert_eq!(r.body["token"]["user"]["name"], "admin");
    let rescoped = r.header("x-subject-token").expect("token").to_string();
    assert_ne!(rescoped, admin);
    assert_eq!(Api::new(&c.url(), Some(rescoped)).count("/bridges"), 2, "still an admin");
    // Alice cannot rescope to bob's tenant.
    let (alice, _) = login(&c, "alice", None);
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": alice}},
                      "scope": {"project": {"id": "tenant-b"}}}});
    keystone_error(&tokens(&c, &body), 401);
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "0badc0de"}}}});
    keystone_error(&tokens(&c, &body), 401);
    // A MidoNet /login token validates as an unscoped Keystone token.
    let midonet = c.admin_token();
    let r = ks(&c, &admin)
        .raw("GET", "/v3/auth/tokens", &[("X-Subject-Token", &midonet)], None)
        .expect(200);
    assert!(r.body["token"].get("project").is_none(), "{}", r.text);
}

#[test]
fn projects_domains_and_roles() {
    let c = cluster();
    let (admin, _) = login(&c, "admin", None);
    let (alice, _) = login(&c, "alice", None);
    let admin_ks = ks(&c, &admin);
    let alice_ks = ks(&c, &alice);
    // Projects: [[tenants]], users' tenants and the admin project.
    let all = admin_ks.ok("/v3/projects");
    assert_eq!(names(&all["projects"]), ["admin", "Tenant A", "tenant-b"]);
    let p = &all["projects"][1];
    assert_eq!(p["id"], "tenant-a");
    assert_eq!(p["domain_id"], "default");
    assert_eq!(p["parent_id"], "default");
    assert_eq!((p["enabled"].as_bool(), p["is_domain"].as_bool()), (Some(true), Some(false)));
    assert_eq!(p["links"]["self"], json!(format!("{}{KS}/v3/projects/tenant-a", root(&c))));
    assert_eq!(names(&admin_ks.ok("/v3/projects?name=Tenant%20A")["projects"]), ["Tenant A"]);
    assert_eq!(admin_ks.count_in("/v3/projects?name=nope", "projects"), 0);
    // By id and by name (OSC looks up `--project <name>` this way).
    for key in ["tenant-a", "Tenant%20A"] {
        assert_eq!(admin_ks.ok(&format!("/v3/projects/{key}"))["project"]["id"], "tenant-a");
    }
    keystone_error(&admin_ks.get("/v3/projects/nope"), 404);
    // A member sees its own project only.
    assert_eq!(names(&alice_ks.ok("/v3/projects")["projects"]), ["Tenant A"]);
    assert_eq!(alice_ks.ok("/v3/projects/tenant-a")["project"]["name"], "Tenant A");
    keystone_error(&alice_ks.get("/v3/projects/tenant-b"), 404);
    assert_eq!(names(&alice_ks.ok("/v3/auth/projects")["projects"]), ["Tenant A"]);
    assert_eq!(admin_ks.count_in("/v3/auth/projects", "projects"), 3);
    // A user's projects: its own for anyone, others' for admins.
    assert_eq!(names(&alice_ks.ok("/v3/users/alice/projects")["projects"]), ["Tenant A"]);
    assert_eq!(names(&admin_ks.ok("/v3/users/bob/projects")["projects"]), ["tenant-b"]);
    assert_eq!(admin_ks.count_in("/v3/users/admin/projects", "projects"), 3);
    keystone_error(&alice_ks.get("/v3/users/bob/projects"), 403);
    keystone_error(&admin_ks.get("/v3/users/eve/projects"), 404);
    // The one domain, and the roles.
    let d = admin_ks.ok("/v3/domains?name=Default");
    assert_eq!(d["domains"][0]["id"], "default");
    assert_eq!(admin_ks.count_in("/v3/domains?name=Other", "domains"), 0);
    assert_eq!(alice_ks.ok("/v3/domains/default")["domain"]["name"], "Default");
    keystone_error(&admin_ks.get("/v3/domains/other"), 404);
    assert_eq!(names(&admin_ks.ok("/v3/roles")["roles"]), ["admin", "member", "reader"]);
    // Everything but discovery and token requests needs a token.
    let anon = Api::new(&format!("{}{KS}", root(&c)), None);
    for path in
        ["/v3/projects", "/v3/projects/admin", "/v3/auth/projects", "/v3/domains", "/v3/roles"]
    {
        keystone_error(&anon.get(path), 401);
    }
    keystone_error(
        &Api::new(&format!("{}{KS}", root(&c)), Some("0badc0de".into())).get("/v3/roles"),
        401,
    );
}

#[test]
fn tokens_validate_and_revoke() {
    let c = cluster();
    let (admin, _) = login(&c, "admin", None);
    let (alice, issued) = login(&c, "alice", None);
    let (bob, _) = login(&c, "bob", None);
    let subject = |who: &str, tok: &str, method: &str, path: &str| {
        ks(&c, who).raw(method, path, &[("X-Subject-Token", tok)], None)
    };
    // What keystonemiddleware does: the same body as when issued.
    let r = subject(&admin, &alice, "GET", "/v3/auth/tokens").expect(200);
    assert_eq!(r.header("x-subject-token"), Some(alice.as_str()));
    for key in ["user", "project", "roles", "expires_at", "audit_ids", "catalog"] {
        assert_eq!(r.body["token"][key], issued[key], "{key}");
    }
    let r = subject(&admin, &alice, "GET", "/v3/auth/tokens?nocatalog").expect(200);
    assert!(r.body["token"].get("catalog").is_none());
    let r = subject(&admin, &alice, "HEAD", "/v3/auth/tokens").expect(200);
    assert!(r.text.is_empty());
    // Users see their own tokens, not others'.
    subject(&alice, &alice, "GET", "/v3/auth/tokens").expect(200);
    keystone_error(&subject(&alice, &bob, "GET", "/v3/auth/tokens"), 403);
    keystone_error(&subject(&admin, "0badc0de", "GET", "/v3/auth/tokens"), 404);
    assert_eq!(subject(&admin, "0badc0de", "HEAD", "/v3/auth/tokens").status, 404);
    keystone_error(&ks(&c, &admin).get("/v3/auth/tokens"), 400);
    keystone_error(&Api::new(&format!("{}{KS}", root(&c)), None).get("/v3/auth/tokens"), 401);
    // Revocation: 204, then the token is gone everywhere.
    keystone_error(&subject(&alice, &bob, "DELETE", "/v3/auth/tokens"), 403);
    subject(&admin, &alice, "DELETE", "/v3/auth/tokens").expect(204);
    keystone_error(&subject(&admin, &alice, "GET", "/v3/auth/tokens"), 404);
    keystone_error(&subject(&admin, &alice, "DELETE", "/v3/auth/tokens"), 404);
    Api::new(&c.url(), Some(alice)).get("/bridges").expect(401);
    // One's own token, too.
    subject(&bob, &bob, "DELETE", "/v3/auth/tokens").expect(204);
    Api::new(&c.url(), Some(bob)).get("/bridges").expect(401);
}

#[test]
fn auth_disabled_gives_anyone_an_admin_token() {
    let c = TestCluster::start("memory:", false);
    let (token, t) = login(&c, "whoever", Some(project_name("some-project")));
    assert_eq!(t["user"]["name"], "whoever");
    assert_eq!(t["project"]["id"], "some-project");
    assert_eq!(names(&t["roles"]), ["admin", "member", "reader"]);
    let (_, t) = login(&c, "whoever", None);
    assert_eq!(t["project"]["id"], "admin");
    Api::new(&c.url(), Some(token)).ok("/bridges");
    assert!(ks(&c, "anything").count_in("/v3/projects", "projects") >= 1);
}

/// A second cluster pointed at the first one's identity endpoint as its
/// external Keystone: the first one stands in for a real Keystone, which
/// cannot run here; the call is the same (`GET /v3/auth/tokens`).
#[test]
fn an_external_keystone_vouches_for_its_tokens() {
    let keystone = cluster();
    let mut cfg = config();
    cfg.auth.keystone_url = format!("{}{KS}/v3", root(&keystone));
    let c = TestCluster::start_with(cfg);
    let local = Api::new(&c.url(), Some(c.admin_token()));
    local.create("/bridges", &json!({"name": "a", "tenantId": "tenant-a"}));
    local.create("/bridges", &json!({"name": "b", "tenantId": "tenant-b"}));
    let (alice, _) = login(&keystone, "alice", None);
    let (admin, _) = login(&keystone, "admin", None);
    assert_eq!(names(&Api::new(&c.url(), Some(alice.clone())).ok("/bridges")), ["a"]);
    assert_eq!(Api::new(&c.url(), Some(admin)).count("/bridges"), 2);
    Api::new(&c.url(), Some("0badc0de".into())).get("/bridges").expect(401);
    // A good answer is trusted for a while (EXTERNAL_CACHE): revoked there,
    // the token still works here until then.
    ks(&keystone, &alice)
        .raw("DELETE", "/v3/auth/tokens", &[("X-Subject-Token", &alice)], None)
        .expect(204);
    Api::new(&c.url(), Some(alice)).get("/bridges").expect(200);
}

/// The Neutron API on the main port, with a token.
fn neutron(c: &TestCluster, token: &str) -> Api {
    Api::new(&format!("{}/neutron", root(c)), Some(token.to_string()))
}

/// A token for a store user, scoped to a project by id.
#[track_caller]
fn login_to(c: &TestCluster, user: &str, password: &str, project: &str) -> (String, Value) {
    let scope = json!({"project": {"id": project}});
    let r = tokens(c, &password_auth(user, password, Some(scope))).expect(201);
    (r.header("x-subject-token").expect("X-Subject-Token").to_string(), r.body["token"].clone())
}

/// What tempest's dynamic credentials do for each test class: a project,
/// a user with a password, a role on the project, a token for the user.
#[test]
fn admins_make_projects_users_and_role_assignments() {
    let c = cluster();
    let (admin, _) = login(&c, "admin", None);
    let admin_ks = ks(&c, &admin);
    let r = admin_ks
        .post(
            "/v3/projects",
            &json!({"project": {"name": "dyn-1", "description": "d",
            "domain_id": "default"}}),
        )
        .expect(201);
    let p = r.body["project"].clone();
    let pid = p["id"].as_str().expect("id").to_string();
    assert_eq!(pid.len(), 32, "{p}");
    assert_eq!((p["name"].as_str(), p["description"].as_str()), (Some("dyn-1"), Some("d")));
    assert_eq!((p["domain_id"].as_str(), p["enabled"].as_bool()), (Some("default"), Some(true)));
    assert_eq!(admin_ks.ok(&format!("/v3/projects/{pid}"))["project"], p);
    assert!(names(&admin_ks.ok("/v3/projects")["projects"]).contains(&"dyn-1".to_string()));
    let r = admin_ks
        .post(
            "/v3/users",
            &json!({"user": {"name": "dyn-1-project", "password": "s3cret",
            "domain_id": "default", "email": "x@example.org"}}),
        )
        .expect(201);
    let u = r.body["user"].clone();
    let uid = u["id"].as_str().expect("id").to_string();
    assert_eq!(
        (u["name"].as_str(), u["domain_id"].as_str()),
        (Some("dyn-1-project"), Some("default"))
    );
    assert!(u.get("password").is_none() && !r.text.contains("s3cret"), "{}", r.text);
    assert_eq!(admin_ks.ok(&format!("/v3/users/{uid}"))["user"], u);
    assert_eq!(admin_ks.ok("/v3/users?name=dyn-1-project")["users"][0]["id"], json!(uid));
    assert_eq!(admin_ks.ok("/v3/users?name=alice")["users"][0]["id"], "alice");
    // The password is stored salted and hashed, never as sent.
    assert!(common::dump(&c).iter().all(|(_, v)| !String::from_utf8_lossy(v).contains("s3cret")));
    // No role yet: no token.
    let scope = json!({"project": {"id": pid}});
    keystone_error(&tokens(&c, &password_auth("dyn-1-project", "s3cret", Some(scope))), 401);
    // Roles as tempest finds them: listed, picked by name, assigned by id.
    let roles = admin_ks.ok("/v3/roles?name=member")["roles"].clone();
    let member = roles[0]["id"].as_str().expect("member role").to_string();
    let grant = format!("/v3/projects/{pid}/users/{uid}/roles/{member}");
    admin_ks.put(&grant, &json!(null)).expect(204);
    admin_ks.put(&grant, &json!(null)).expect(204);
    admin_ks.raw("HEAD", &grant, &[], None).expect(204);
    let on = admin_ks.ok(&format!("/v3/projects/{pid}/users/{uid}/roles"));
    assert_eq!(names(&on["roles"]), ["member"]);
    keystone_error(
        &admin_ks.put(&format!("/v3/projects/{pid}/users/{uid}/roles/nope"), &json!(null)),
        404,
    );
    keystone_error(
        &admin_ks.put(&format!("/v3/projects/nope/users/{uid}/roles/member"), &json!(null)),
        404,
    );
    keystone_error(
        &admin_ks.put(&format!("/v3/projects/{pid}/users/nope/roles/member"), &json!(null)),
        404,
    );
    // Log in by name (and user domain), scoped by project name, as tempest does.
    let (token, t) = login_to(&c, "dyn-1-project", "s3cret", &pid);
    assert_eq!(t["user"]["id"], json!(uid));
    assert_eq!(t["user"]["name"], "dyn-1-project");
    assert_eq!(t["project"]["name"], "dyn-1");
    assert_eq!(names(&t["roles"]), ["member"]);
    let r = tokens(&c, &password_auth("dyn-1-project", "s3cret", Some(project_name("dyn-1"))));
    assert_eq!(r.expect(201).body["token"]["project"]["id"], json!(pid));
    let r = tokens(&c, &password_auth("dyn-1-project", "wrong", Some(project_name("dyn-1"))));
    keystone_error(&r, 401);
    // The token validates with the same body, and lists its project.
    let r = ks(&c, &admin)
        .raw("GET", "/v3/auth/tokens", &[("X-Subject-Token", &token)], None)
        .expect(200);
    for key in ["user", "project", "roles"] {
        assert_eq!(r.body["token"][key], t[key], "{key}");
    }
    let mine = ks(&c, &token);
    assert_eq!(names(&mine.ok("/v3/auth/projects")["projects"]), ["dyn-1"]);
    assert_eq!(names(&mine.ok("/v3/projects")["projects"]), ["dyn-1"]);
    assert_eq!(names(&mine.ok(&format!("/v3/users/{uid}/projects"))["projects"]), ["dyn-1"]);
    assert_eq!(names(&admin_ks.ok(&format!("/v3/users/{uid}/projects"))["projects"]), ["dyn-1"]);
    // On the Neutron API the token is a tenant of its project.
    let net = neutron(&c, &token)
        .post("/v2.0/networks", &json!({"network": {"name": "dyn-net"}}))
        .expect(201)
        .body;
    assert_eq!(net["network"]["project_id"], json!(pid));
    let nid = net["network"]["id"].as_str().expect("id").to_string();
    let (alice, _) = login(&c, "alice", None);
    neutron(&c, &alice).get(&format!("/v2.0/networks/{nid}")).expect(404);
    assert_eq!(neutron(&c, &alice).ok("/v2.0/networks")["networks"], json!([]));
    assert_eq!(neutron(&c, &token).ok("/v2.0/networks")["networks"][0]["id"], json!(nid));
    // An `admin` role makes an admin: it sees alice's network too.
    neutron(&c, &alice)
        .post("/v2.0/networks", &json!({"network": {"name": "alice-net"}}))
        .expect(201);
    let r = admin_ks
        .post("/v3/users", &json!({"user": {"name": "dyn-1-admin", "password": "pw2"}}))
        .expect(201);
    let aid = r.body["user"]["id"].as_str().expect("id").to_string();
    admin_ks.put(&format!("/v3/projects/{pid}/users/{aid}/roles/admin"), &json!(null)).expect(204);
    let (dyn_admin, t) = login_to(&c, "dyn-1-admin", "pw2", &pid);
    assert_eq!(names(&t["roles"]), ["admin"]);
    assert_eq!(neutron(&c, &dyn_admin).count_in("/v2.0/networks", "networks"), 2);
    ks(&c, &dyn_admin)
        .post("/v3/projects", &json!({"project": {"name": "by-dyn-admin"}}))
        .expect(201);
    // A store user may also hold a role on a config project.
    admin_ks
        .put(&format!("/v3/projects/tenant-b/users/{uid}/roles/reader"), &json!(null))
        .expect(204);
    let (on_b, t) = login_to(&c, "dyn-1-project", "s3cret", "tenant-b");
    assert_eq!(names(&t["roles"]), ["reader"]);
    neutron(&c, &on_b).get("/v2.0/networks").expect(200);
    // Taking the role away stops the token on that project only.
    admin_ks.delete(&format!("/v3/projects/tenant-b/users/{uid}/roles/reader")).expect(204);
    keystone_error(
        &admin_ks.delete(&format!("/v3/projects/tenant-b/users/{uid}/roles/reader")),
        404,
    );
    neutron(&c, &on_b).get("/v2.0/networks").expect(401);
    neutron(&c, &token).get("/v2.0/networks").expect(200);
}

#[test]
fn identity_writes_are_for_admins_and_names_are_unique() {
    let c = cluster();
    let (admin, _) = login(&c, "admin", None);
    let (alice, _) = login(&c, "alice", None);
    let admin_ks = ks(&c, &admin);
    let alice_ks = ks(&c, &alice);
    let pid = admin_ks.post("/v3/projects", &json!({"project": {"name": "p"}})).expect(201).body
        ["project"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let uid = admin_ks
        .post("/v3/users", &json!({"user": {"name": "u", "password": "pw"}}))
        .expect(201)
        .body["user"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    admin_ks.put(&format!("/v3/projects/{pid}/users/{uid}/roles/member"), &json!(null)).expect(204);
    let (member, _) = login_to(&c, "u", "pw", &pid);
    // A member (config or store) gets Keystone's 403.
    for who in [&alice_ks, &ks(&c, &member)] {
        let r = who.post("/v3/projects", &json!({"project": {"name": "q"}}));
        keystone_error(&r, 403);
        assert!(r.text.contains("identity:create_project"), "{}", r.text);
        keystone_error(&who.post("/v3/users", &json!({"user": {"name": "v"}})), 403);
        keystone_error(&who.delete(&format!("/v3/users/{uid}")), 403);
        keystone_error(&who.delete(&format!("/v3/projects/{pid}")), 403);
        keystone_error(
            &who.put(&format!("/v3/projects/{pid}/users/{uid}/roles/admin"), &json!(null)),
            403,
        );
        keystone_error(&who.get("/v3/users"), 403);
    }
    // Duplicates, against the store's names and the config's: 409.
    for name in ["p", "Tenant A", "tenant-b", "admin"] {
        keystone_error(&admin_ks.post("/v3/projects", &json!({"project": {"name": name}})), 409);
    }
    for name in ["u", "alice", "admin"] {
        keystone_error(&admin_ks.post("/v3/users", &json!({"user": {"name": name}})), 409);
    }
    // Malformed bodies name the field; other domains do not exist.
    let r = admin_ks.post("/v3/projects", &json!({"project": {}}));
    keystone_error(&r, 400);
    assert!(r.text.contains("project.name"), "{}", r.text);
    keystone_error(&admin_ks.post("/v3/users", &json!({"user": {"name": 3}})), 400);
    keystone_error(&admin_ks.post("/v3/users", &json!({"name": "x"})), 400);
    keystone_error(
        &admin_ks.post("/v3/projects", &json!({"project": {"name": "x", "domain_id": "other"}})),
        404,
    );
    // The config stays the config.
    keystone_error(&admin_ks.delete("/v3/users/alice"), 403);
    keystone_error(&admin_ks.delete("/v3/projects/tenant-a"), 403);
    keystone_error(
        &admin_ks.put(&format!("/v3/projects/{pid}/users/alice/roles/admin"), &json!(null)),
        403,
    );
    keystone_error(&admin_ks.delete("/v3/users/nope"), 404);
    keystone_error(&admin_ks.delete("/v3/projects/nope"), 404);
}

/// `POST /v3/{kind}s` as an admin; the new object's id.
#[track_caller]
fn make(admin_ks: &Api, kind: &str, body: Value) -> String {
    let r = admin_ks.post(&format!("/v3/{kind}s"), &json!({ kind: body })).expect(201);
    r.body[kind]["id"].as_str().expect("id").to_string()
}

#[test]
fn deleting_a_user_or_project_stops_its_tokens() {
    let c = cluster();
    let (admin, _) = login(&c, "admin", None);
    let admin_ks = ks(&c, &admin);
    let make = |kind: &str, body: Value| make(&admin_ks, kind, body);
    let p1 = make("project", json!({"name": "p1"}));
    let p2 = make("project", json!({"name": "p2"}));
    let u1 = make("user", json!({"name": "u1", "password": "pw"}));
    let u2 = make("user", json!({"name": "u2", "password": "pw", "default_project_id": p2}));
    for (u, p) in [(&u1, &p1), (&u2, &p2)] {
        admin_ks.put(&format!("/v3/projects/{p}/users/{u}/roles/member"), &json!(null)).expect(204);
    }
    let (t1, _) = login_to(&c, "u1", "pw", &p1);
    // Unscoped: the default project.
    let r = tokens(&c, &password_auth("u2", "pw", None)).expect(201);
    assert_eq!(r.body["token"]["project"]["id"], json!(p2));
    let t2 = r.header("x-subject-token").expect("token").to_string();
    neutron(&c, &t1).get("/v2.0/networks").expect(200);
    neutron(&c, &t2).get("/v2.0/networks").expect(200);
    // Deleting the user: 204, its tokens refused everywhere, its name free.
    admin_ks.delete(&format!("/v3/users/{u1}")).expect(204);
    keystone_error(&admin_ks.delete(&format!("/v3/users/{u1}")), 404);
    keystone_error(&admin_ks.get(&format!("/v3/users/{u1}")), 404);
    neutron(&c, &t1).get("/v2.0/networks").expect(401);
    Api::new(&c.url(), Some(t1.clone())).get("/bridges").expect(401);
    keystone_error(&ks(&c, &t1).get("/v3/auth/projects"), 401);
    keystone_error(
        &ks(&c, &admin).raw("GET", "/v3/auth/tokens", &[("X-Subject-Token", &t1)], None),
        404,
    );
    let rescope = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": t1}}}});
    keystone_error(&tokens(&c, &rescope), 401);
    keystone_error(&tokens(&c, &password_auth("u1", "pw", None)), 401);
    make("user", json!({"name": "u1"}));
    // Deleting the project: its assignments go, and its tokens stop.
    admin_ks.delete(&format!("/v3/projects/{p2}")).expect(204);
    keystone_error(&admin_ks.get(&format!("/v3/projects/{p2}")), 404);
    neutron(&c, &t2).get("/v2.0/networks").expect(401);
    assert!(!names(&admin_ks.ok("/v3/projects")["projects"]).contains(&"p2".to_string()));
    make("project", json!({"name": "p2"}));
}

/// A reader's write: 403 with the API's own error body, naming the role.
#[track_caller]
fn refused_to_reader(r: &Resp, neutron: bool) {
    assert_eq!(r.status, 403, "{}", r.text);
    let message = if neutron {
        assert_eq!(r.body["NeutronError"]["type"], "PolicyNotAuthorized", "{}", r.text);
        assert_eq!(r.body["NeutronError"]["detail"], "", "{}", r.text);
        &r.body["NeutronError"]["message"]
    } else {
        assert_eq!(r.body["code"], 403, "{}", r.text);
        &r.body["message"]
    };
    assert!(message.as_str().is_some_and(|m| m.contains("reader role")), "{}", r.text);
}

/// Keystone's `reader` role reads its project's objects and writes none,
/// on the Neutron and the MidoNet API alike; a member of the same project
/// writes; granting `member` to the reader lets the same token write at
/// once, as the roles are read again at each use.
#[test]
fn a_reader_reads_but_does_not_write() {
    let c = cluster();
    let (admin, _) = login(&c, "admin", None);
    let admin_ks = ks(&c, &admin);
    let p = make(&admin_ks, "project", json!({"name": "watched"}));
    let r = make(&admin_ks, "user", json!({"name": "r", "password": "pw"}));
    let m = make(&admin_ks, "user", json!({"name": "m", "password": "pw"}));
    let grant = |user: &str, role: &str| format!("/v3/projects/{p}/users/{user}/roles/{role}");
    admin_ks.put(&grant(&r, "reader"), &json!(null)).expect(204);
    admin_ks.raw("HEAD", &grant(&r, "reader"), &[], None).expect(204);
    admin_ks.put(&grant(&m, "member"), &json!(null)).expect(204);
    let (reader, t) = login_to(&c, "r", "pw", &p);
    assert_eq!(names(&t["roles"]), ["reader"]);
    let (member, _) = login_to(&c, "m", "pw", &p);

    // Neutron: the member creates; the reader lists and shows it, and
    // each of its writes is Neutron's 403, changing nothing.
    let (member_n, reader_n) = (neutron(&c, &member), neutron(&c, &reader));
    let r_net = member_n.post("/v2.0/networks", &json!({"network": {"name": "n1"}})).expect(201);
    let net = format!("/v2.0/networks/{}", r_net.body["network"]["id"].as_str().expect("id"));
    assert_eq!(reader_n.ok("/v2.0/networks")["networks"][0]["name"], "n1");
    assert_eq!(reader_n.ok(&net)["network"]["name"], "n1");
    refused_to_reader(&reader_n.post("/v2.0/networks", &json!({"network": {"name": "n2"}})), true);
    refused_to_reader(&reader_n.put(&net, &json!({"network": {"name": "mine"}})), true);
    refused_to_reader(&reader_n.delete(&net), true);
    assert_eq!(member_n.count_in("/v2.0/networks", "networks"), 1);
    assert_eq!(
        member_n.put(&net, &json!({"network": {"name": "n1b"}})).expect(200).body["network"]
            ["name"],
        "n1b"
    );

    // The MidoNet API: the same, with its own error body.
    let (member_m, reader_m) =
        (Api::new(&c.url(), Some(member.clone())), Api::new(&c.url(), Some(reader.clone())));
    let bridge = member_m.create("/bridges", &json!({"name": "b1"}));
    assert_eq!(bridge["tenantId"], json!(p));
    let uri = bridge["uri"].as_str().expect("uri").to_string();
    assert_eq!(reader_m.count("/bridges"), member_m.count("/bridges"));
    assert_eq!(reader_m.ok(&uri)["name"], "b1");
    let mut renamed = bridge.clone();
    renamed["name"] = json!("mine");
    refused_to_reader(&reader_m.post("/bridges", &json!({"name": "b2"})), false);
    refused_to_reader(&reader_m.put(&uri, &renamed), false);
    refused_to_reader(&reader_m.delete(&uri), false);
    assert_eq!(member_m.ok(&uri)["name"], "b1");
    member_m.put(&uri, &renamed).expect(204);

    // The identity endpoint's writes are an admin's; its own token it may revoke.
    keystone_error(&ks(&c, &reader).post("/v3/projects", &json!({"project": {"name": "q"}})), 403);

    // Granting `member`: the reader's token writes at once; taking it away
    // makes it read-only again.
    admin_ks.put(&grant(&r, "member"), &json!(null)).expect(204);
    reader_n.post("/v2.0/networks", &json!({"network": {"name": "n2"}})).expect(201);
    reader_m.create("/bridges", &json!({"name": "b2"}));
    reader_n.delete(&net).expect(204);
    admin_ks.delete(&grant(&r, "member")).expect(204);
    refused_to_reader(&reader_n.post("/v2.0/networks", &json!({"network": {"name": "n3"}})), true);
    reader_n.get("/v2.0/networks").expect(200);
    let (mine, _) = login_to(&c, "r", "pw", &p);
    ks(&c, &mine).raw("DELETE", "/v3/auth/tokens", &[("X-Subject-Token", &mine)], None).expect(204);
}
