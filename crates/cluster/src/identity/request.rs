//! The body of `POST /v3/auth/tokens`, decoded and checked: who
//! authenticates (password or token) and which scope it asks for. Every
//! error names the request field at fault.

use serde_json::Value;

use super::KsError;

/// Which project a token request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef {
    Id(String),
    Name(String),
}

/// The scope asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No scope: the user's default project.
    Default,
    /// `auth.scope.system`: an admin's `admin_project`.
    System,
    /// `auth.scope.project`; `default_domain` is false when the request
    /// named another domain, where nothing exists.
    Project { by: ProjectRef, default_domain: bool },
}

/// Who authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `password.user` by name or id (the same here), with its password.
    Password { user: String, password: String, default_domain: bool },
    /// `token.id`: rescope a token.
    Token { id: String },
}

/// A decoded `POST /v3/auth/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub methods: Vec<String>,
    pub identity: Identity,
    pub scope: Scope,
}

/// `path.key`, or `key` at the top.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The member `key` of the object `v` found at `path`, or 400 when `v` is
/// not an object. `null` counts as absent.
pub(super) fn member<'a>(
    v: &'a Value,
    path: &str,
    key: &str,
) -> Result<Option<&'a Value>, KsError> {
    match v {
        Value::Object(m) => Ok(m.get(key).filter(|x| !x.is_null())),
        _ if path.is_empty() => Err(KsError::bad_request("the body must be a JSON object")),
        _ => Err(KsError::bad_request(format!("`{path}` must be an object"))),
    }
}

/// A required member that must be an object.
pub(super) fn object<'a>(v: &'a Value, path: &str, key: &str) -> Result<&'a Value, KsError> {
    let full = join(path, key);
    match member(v, path, key)? {
        Some(x @ Value::Object(_)) => Ok(x),
        Some(_) => Err(KsError::bad_request(format!("`{full}` must be an object"))),
        None => Err(KsError::bad_request(format!("Expecting to find `{full}` in the request"))),
    }
}

/// An optional member that must be a non-empty string.
pub(super) fn string(v: &Value, path: &str, key: &str) -> Result<Option<String>, KsError> {
    match member(v, path, key)? {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => {
            Err(KsError::bad_request(format!("`{}` must be a non-empty string", join(path, key))))
        }
    }
}

/// Whether an optional `domain` member of the object at `path` names the
/// default domain (by id or name, case aside); absent counts as default.
fn in_default_domain(v: &Value, path: &str) -> Result<bool, KsError> {
    let Some(d) = member(v, path, "domain")? else { return Ok(true) };
    let at = format!("{path}.domain");
    let id = string(d, &at, "id")?;
    let name = string(d, &at, "name")?;
    if id.is_none() && name.is_none() {
        return Err(KsError::bad_request(format!("`{at}` needs an `id` or a `name`")));
    }
    let default =
        |s: &Option<String>| s.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("default"));
    Ok(default(&id) && default(&name))
}

/// Decodes a token request. Errors are 400s naming the field; a method
/// this endpoint does not serve is a 401, as Keystone answers it.
pub fn parse_auth_request(body: &Value) -> Result<AuthRequest, KsError> {
    let auth = object(body, "", "auth")?;
    let identity = object(auth, "auth", "identity")?;
    let methods: Vec<String> = match member(identity, "auth.identity", "methods")? {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                KsError::bad_request("`auth.identity.methods` must be a list of strings")
            })?,
        Some(_) => {
            return Err(KsError::bad_request(
                "`auth.identity.methods` must be a non-empty list of strings",
            ))
        }
        None => {
            return Err(KsError::bad_request(
                "Expecting to find `auth.identity.methods` in the request",
            ))
        }
    };
    let who = if methods.iter().any(|m| m == "password") {
        let password = object(identity, "auth.identity", "password")?;
        let user = object(password, "auth.identity.password", "user")?;
        let at = "auth.identity.password.user";
        let name = string(user, at, "name")?;
        let id = string(user, at, "id")?;
        // A user's id is its name; the domain only matters for a name.
        let (user_name, default_domain) = match (name, id) {
            (Some(n), _) => (n, in_default_domain(user, at)?),
            (None, Some(i)) => (i, true),
            (None, None) => {
                return Err(KsError::bad_request(format!("`{at}` needs a `name` or an `id`")))
            }
        };
        let secret = match member(user, at, "password")? {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(KsError::bad_request(format!("`{at}.password` must be a string")))
            }
            None => {
                return Err(KsError::bad_request(format!(
                    "Expecting to find `{at}.password` in the request"
                )))
            }
        };
        Identity::Password { user: user_name, password: secret, default_domain }
    } else if methods.iter().any(|m| m == "token") {
        let token = object(identity, "auth.identity", "token")?;
        let id = string(token, "auth.identity.token", "id")?.ok_or_else(|| {
            KsError::bad_request("Expecting to find `auth.identity.token.id` in the request")
        })?;
        Identity::Token { id }
    } else {
        return Err(KsError::unauthorized(format!(
            "Attempted to authenticate with an unsupported method: {} (use password or token)",
            methods.join(", ")
        )));
    };
    let scope = match member(auth, "auth", "scope")? {
        None => Scope::Default,
        Some(Value::String(s)) if s == "unscoped" => Scope::Default,
        Some(scope @ Value::Object(_)) => {
            if let Some(p) = member(scope, "auth.scope", "project")? {
                let at = "auth.scope.project";
                let by = match (string(p, at, "id")?, string(p, at, "name")?) {
                    (Some(id), _) => ProjectRef::Id(id),
                    (None, Some(name)) => ProjectRef::Name(name),
                    (None, None) => {
                        return Err(KsError::bad_request(format!(
                            "`{at}` needs an `id` or a `name`"
                        )))
                    }
                };
                let default_domain = match by {
                    ProjectRef::Id(_) => true,
                    ProjectRef::Name(_) => in_default_domain(p, at)?,
                };
                Scope::Project { by, default_domain }
            } else if member(scope, "auth.scope", "system")?.is_some() {
                Scope::System
            } else if member(scope, "auth.scope", "domain")?.is_some() {
                return Err(KsError::unauthorized(
                    "domain-scoped tokens are not served: scope to a project or the system",
                ));
            } else {
                Scope::Default
            }
        }
        Some(_) => return Err(KsError::bad_request("`auth.scope` must be an object")),
    };
    Ok(AuthRequest { methods, identity: who, scope })
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;

    fn password_body(user: Value, scope: Option<Value>) -> Value {
        let mut b = json!({"auth": {"identity": {
            "methods": ["password"],
            "password": {"user": user},
        }}});
        if let Some(s) = scope {
            b["auth"]["scope"] = s;
        }
        b
    }

    #[test]
    fn password_requests_parse() {
        let user = json!({"name": "alice", "domain": {"name": "Default"}, "password": "pw"});
        let scope = json!({"project": {"name": "t1", "domain": {"id": "default"}}});
        let r = parse_auth_request(&password_body(user.clone(), Some(scope))).expect("valid");
        assert_eq!(r.methods, ["password"]);
        assert_eq!(
            r.identity,
            Identity::Password {
                user: "alice".into(),
                password: "pw".into(),
                default_domain: true
            }
        );
        assert_eq!(
            r.scope,
            Scope::Project { by: ProjectRef::Name("t1".into()), default_domain: true }
        );
        // By user id, scoped by project id, and to the system.
        let by_id = json!({"id": "alice", "password": "pw"});
        let r = parse_auth_request(&password_body(
            by_id.clone(),
            Some(json!({"project": {"id": "p"}})),
        ))
        .expect("valid");
        assert!(matches!(r.identity, Identity::Password { ref user, .. } if user == "alice"));
        assert_eq!(
            r.scope,
            Scope::Project { by: ProjectRef::Id("p".into()), default_domain: true }
        );
        let r = parse_auth_request(&password_body(
            by_id.clone(),
            Some(json!({"system": {"all": true}})),
        ))
        .expect("valid");
        assert_eq!(r.scope, Scope::System);
        let r = parse_auth_request(&password_body(by_id, None)).expect("valid");
        assert_eq!(r.scope, Scope::Default);
        // Another domain parses; it resolves to nothing.
        let other = json!({"name": "alice", "domain": {"name": "Other"}, "password": "pw"});
        let r = parse_auth_request(&password_body(other, None)).expect("valid");
        assert!(matches!(r.identity, Identity::Password { default_domain: false, .. }));
    }

    #[test]
    fn token_requests_parse() {
        let b = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "abc"}},
                       "scope": {"project": {"name": "t2", "domain": {"name": "default"}}}}});
        let r = parse_auth_request(&b).expect("valid");
        assert_eq!(r.identity, Identity::Token { id: "abc".into() });
        assert_eq!(
            r.scope,
            Scope::Project { by: ProjectRef::Name("t2".into()), default_domain: true }
        );
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([1]), "the body must be a JSON object"),
            (json!({}), "`auth`"),
            (json!({"auth": 1}), "`auth` must be an object"),
            (json!({"auth": {}}), "`auth.identity`"),
            (json!({"auth": {"identity": {}}}), "`auth.identity.methods`"),
            (json!({"auth": {"identity": {"methods": []}}}), "`auth.identity.methods`"),
            (json!({"auth": {"identity": {"methods": [1]}}}), "`auth.identity.methods`"),
            (json!({"auth": {"identity": {"methods": ["password"]}}}), "`auth.identity.password`"),
            (
                password_body(json!("alice"), None),
                "`auth.identity.password.user` must be an object",
            ),
            (password_body(json!({"password": "pw"}), None), "`auth.identity.password.user`"),
            (password_body(json!({"name": "a"}), None), "`auth.identity.password.user.password`"),
            (
                password_body(json!({"name": 7, "password": "pw"}), None),
                "`auth.identity.password.user.name`",
            ),
            (
                password_body(json!({"name": "a", "password": "pw", "domain": {}}), None),
                "`auth.identity.password.user.domain`",
            ),
            (password_body(json!({"id": "a", "password": "pw"}), Some(json!(3))), "`auth.scope`"),
            (
                password_body(json!({"id": "a", "password": "pw"}), Some(json!({"project": {}}))),
                "`auth.scope.project`",
            ),
            (
                json!({"auth": {"identity": {"methods": ["token"], "token": {}}}}),
                "`auth.identity.token.id`",
            ),
        ];
        for (body, needle) in cases {
            let e = parse_auth_request(&body).expect_err("malformed");
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}: {e:?}");
            assert!(e.message.contains(needle), "{body}: {} lacks {needle}", e.message);
        }
        // A method not served is a 401, as Keystone answers it.
        let e = parse_auth_request(&json!({"auth": {"identity": {"methods": ["totp"]}}}))
            .expect_err("unsupported");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
    }
}
