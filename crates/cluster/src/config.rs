//! Cluster configuration: one TOML file, every key optional.
//!
//! ```toml
//! # Address of the REST API (and of /metrics).            default 127.0.0.1:8181
//! listen = "127.0.0.1:8181"
//! # Where the topology lives: embedded:/path, memory:, etcd://h:p[,h:p]
//! #                                  default embedded:/var/lib/midonet/cluster.redb
//! store = "embedded:/var/lib/midonet/cluster.redb"
//! # Base URL written into `uri` fields and `Location` headers, for clusters
//! # behind a proxy. Empty: built from each request's Host header.  default ""
//! public_url = ""
//! # Address of the agents' gRPC topology service.          default 127.0.0.1:8182
//! grpc_listen = "127.0.0.1:8182"
//! # Address of the OpenStack Neutron v2.0 API (and its Keystone-compatible
//! # /identity). Empty: no own listener (the API is still served at
//! # /neutron on `listen`).                                   default 127.0.0.1:9696
//! neutron_listen = "127.0.0.1:9696"
//! # Store revisions kept for watchers (agents resume from them after a
//! # disconnect); older history is compacted once a minute. 0 = never
//! # compact (history grows without bound).                 default 100000
//! history_revisions = 100000
//!
//! [agents]
//! # Agents present an enrolled host credential on every call
//! # (`midonet host enroll`) and act only for their own host. false = any
//! # process that reaches grpc_listen may act for any host (a private
//! # development setup only; logged at start).               default true
//! credentials = true
//!
//! [tls]
//! # PEM certificate chain and private key for the agents' gRPC listener.
//! # Both or neither; empty: plain HTTP/2 (credentials then travel in
//! # clear: only on a trusted underlay).                      default ""
//! cert = ""
//! key = ""
//!
//! [api_tls]
//! # PEM certificate chain and key for HTTPS on `listen` (REST, Neutron at
//! # /neutron, /metrics) and `neutron_listen`. Both or neither; empty:
//! # plain HTTP.                                               default ""
//! cert = ""
//! key = ""
//!
//! [auth]
//! enabled = true            # false = everyone is admin (same as --no-auth)
//! token_ttl_secs = 3600     # lifetime of a token (POST /login, Keystone tokens)
//! # Project of admins' Keystone tokens that scope to no other project;
//! # a project of its own, like the [[tenants]].
//! admin_project = "admin"   #                                   default "admin"
//! # An external Keystone (e.g. "http://keystone:5000"): X-Auth-Token values
//! # this cluster did not issue are checked with GET {keystone_url}/v3/auth/tokens,
//! # and good answers are trusted for 60 s. Empty: only local tokens.  default ""
//! keystone_url = ""
//!
//! [[auth.users]]
//! name = "admin"
//! password = "secret"       # or password_sha256 = "<hex of sha256(password)>"
//! role = "admin"            # "admin" | "tenant"
//!
//! [[auth.users]]
//! name = "alice"
//! password = "pw"
//! role = "tenant"
//! tenant = "t1"             # required for role = "tenant"
//!
//! [[tenants]]               # listed by GET /tenants even before they own objects
//! id = "t1"                 # also a Keystone project: its id
//! name = "Tenant One"       # and its name (default: the id)
//! ```
//!
//! Keystone projects are the `[[tenants]]`, the users' tenants and
//! `admin_project`; Keystone users are `[[auth.users]]` (id = name, domain
//! `Default`).
//!
//! With auth enabled and no users configured nobody can log in; the cluster
//! logs a warning at start. Use `--no-auth` for a private development setup.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ClusterError;

/// Default REST listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8181";
/// Default gRPC listen address (topology service).
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:8182";
/// Default store URL.
pub const DEFAULT_STORE: &str = "embedded:/var/lib/midonet/cluster.redb";
/// Default Neutron API listen address.
pub const DEFAULT_NEUTRON_LISTEN: &str = "127.0.0.1:9696";
/// Default number of store revisions kept before compaction.
pub const DEFAULT_HISTORY_REVISIONS: i64 = 100_000;
/// Default token lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// Default Keystone project of admins.
pub const DEFAULT_ADMIN_PROJECT: &str = "admin";

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: String,
    pub public_url: String,
    pub grpc_listen: SocketAddr,
    /// Own listener of the Neutron API; empty for none.
    pub neutron_listen: String,
    pub history_revisions: i64,
    pub agents: AgentsConfig,
    pub tls: TlsConfig,
    /// HTTPS for the REST and Neutron listeners.
    pub api_tls: TlsConfig,
    pub auth: AuthConfig,
    pub tenants: Vec<TenantConfig>,
}

/// `[agents]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    pub credentials: bool,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig { credentials: true }
    }
}

/// `[tls]`: PEM paths; both empty for none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: String,
    pub key: String,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert.is_empty()
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub enabled: bool,
    pub token_ttl_secs: u64,
    /// Project of admins' Keystone tokens that name no other.
    pub admin_project: String,
    /// External Keystone checking tokens this cluster did not issue; empty
    /// for none.
    pub keystone_url: String,
    pub users: Vec<UserConfig>,
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Tenant,
}

/// `[[auth.users]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Lower-case hex SHA-256 of the password, to keep plain passwords out
    /// of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_sha256: Option<String>,
    pub role: RoleName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `[[tenants]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            store: DEFAULT_STORE.to_string(),
            public_url: String::new(),
            grpc_listen: DEFAULT_GRPC_LISTEN.parse().expect("constant address parses"),
            neutron_listen: DEFAULT_NEUTRON_LISTEN.to_string(),
            history_revisions: DEFAULT_HISTORY_REVISIONS,
            agents: AgentsConfig::default(),
            tls: TlsConfig::default(),
            api_tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            tenants: Vec::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            admin_project: DEFAULT_ADMIN_PROJECT.to_string(),
            keystone_url: String::new(),
            users: Vec::new(),
        }
    }
}

impl UserConfig {
    /// A user with a plain password (tests, examples).
    pub fn new(name: &str, password: &str, role: RoleName, tenant: Option<&str>) -> Self {
        UserConfig {
            name: name.into(),
            password: Some(password.into()),
            password_sha256: None,
            role,
            tenant: tenant.map(str::to_string),
        }
    }
}

impl Config {
    /// The scheme of the API's own links: `https` when `[api_tls]` is set.
    pub fn api_scheme(&self) -> &'static str {
        if self.api_tls.enabled() {
            "https"
        } else {
            "http"
        }
    }

    /// Parses a TOML document and checks it.
    pub fn from_toml(text: &str) -> Result<Config, ClusterError> {
        let cfg: Config = toml::from_str(text).map_err(ClusterError::ConfigParse)?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ClusterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClusterError::ConfigRead { path: path.to_path_buf(), source: e })?;
        Config::from_toml(&text)
    }

    /// The Neutron API's own listen address, if it has one.
    pub fn neutron_addr(&self) -> Result<Option<SocketAddr>, ClusterError> {
        let s = self.neutron_listen.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| {
            ClusterError::ConfigInvalid(format!(
                "neutron_listen `{s}` is not an address:port (or empty for none)"
            ))
        })
    }

    /// Consistency checks that serde cannot express.
    pub fn check(&self) -> Result<(), ClusterError> {
        for u in &self.auth.users {
            if u.password.is_none() && u.password_sha256.is_none() {
                return Err(ClusterError::ConfigInvalid(format!(
                    "user `{}` needs password or password_sha256",
                    u.name
                )));
            }
            if u.role == RoleName::Tenant && u.tenant.as_deref().is_none_or(str::is_empty) {
                return Err(ClusterError::ConfigInvalid(format!(
                    "user `{}` has role tenant but no tenant",
                    u.name
                )));
            }
        }
        self.neutron_addr()?;
        for (name, t) in [("tls", &self.tls), ("api_tls", &self.api_tls)] {
            if t.cert.is_empty() != t.key.is_empty() {
                return Err(ClusterError::ConfigInvalid(format!(
                    "{name}.cert and {name}.key go together: set both or neither"
                )));
            }
        }
        for (key, url) in
            [("public_url", &self.public_url), ("auth.keystone_url", &self.auth.keystone_url)]
        {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !url.is_empty() && !scheme_ok {
                return Err(ClusterError::ConfigInvalid(format!(
                    "{key} `{url}` must start with http:// or https://"
                )));
            }
        }
        if self.auth.admin_project.trim().is_empty() {
            return Err(ClusterError::ConfigInvalid(
                "auth.admin_project must not be empty".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::from_toml("").expect("empty is valid");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.store, DEFAULT_STORE);
        assert!(c.auth.enabled);
        assert_eq!(c.auth.token_ttl_secs, 3600);
        assert_eq!(c.auth.admin_project, "admin");
        assert_eq!(c.auth.keystone_url, "");
    }

    #[test]
    fn keystone_keys_parse_and_are_checked() {
        let c = Config::from_toml(
            "[auth]\nadmin_project = \"ops\"\nkeystone_url = \"http://ks:5000\"\n",
        )
        .expect("valid");
        assert_eq!(c.auth.admin_project, "ops");
        assert_eq!(c.auth.keystone_url, "http://ks:5000");
        let e = Config::from_toml("[auth]\nkeystone_url = \"ks:5000\"\n").expect_err("scheme");
        assert!(e.to_string().contains("auth.keystone_url"), "{e}");
        let e = Config::from_toml("[auth]\nadmin_project = \" \"\n").expect_err("empty");
        assert!(e.to_string().contains("admin_project"), "{e}");
    }

    #[test]
    fn users_and_tenants_parse_and_are_checked() {
        let c = Config::from_toml(
            r#"
listen = "0.0.0.0:9000"
[auth]
[[auth.users]]
name = "alice"
password = "pw"
role = "tenant"
tenant = "t1"
[[tenants]]
id = "t1"
"#,
        )
        .expect("valid");
        assert_eq!(c.auth.users[0].tenant.as_deref(), Some("t1"));
        assert_eq!(c.tenants[0].id, "t1");
        let e = Config::from_toml("[[auth.users]]\nname='x'\npassword='p'\nrole='tenant'\n")
            .expect_err("tenant missing");
        assert!(e.to_string().contains("tenant"), "{e}");
        assert!(Config::from_toml("bogus = 1").is_err());
    }
}
