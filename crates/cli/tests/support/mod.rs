//! Shared helpers for the CLI integration tests: a real cluster to talk to,
//! and a way to run `midonet ...` in-process and capture what it prints.

#![allow(dead_code)] // each test binary uses a different subset

use midonet_client::{Auth, Client};
use serde_json::Value;

use midonet_cluster::testing::TestCluster;

/// The admin of `TestCluster::start` with auth on.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin";

/// A running cluster for one test (in-process, in-memory store, free port);
/// stopped when dropped.
pub struct Server {
    pub url: String,
    pub auth: bool,
    pub cluster: TestCluster,
}

/// Starts a real cluster. Returns `Option` so tests read `let Some(s) =
/// start(..) else { return }`; it is always `Some` (the cluster panics if it
/// cannot start, which fails the test).
pub fn start(auth: bool) -> Option<Server> {
    let cluster = TestCluster::start("memory:", auth);
    Some(Server { url: cluster.url(), auth, cluster })
}

impl Server {
    /// Global flags that point `midonet` at this cluster with admin rights.
    pub fn flags(&self) -> Vec<String> {
        let mut v = vec![
            "--url".to_owned(),
            self.url.clone(),
            // Never read the developer's own ~/.config/midonet/cli.toml.
            "--config".to_owned(),
            "/dev/null".to_owned(),
        ];
        if self.auth {
            v.extend(
                ["--user", ADMIN_USER, "--password", ADMIN_PASSWORD, "--project", "admin"]
                    .map(str::to_owned),
            );
        } else {
            v.push("--no-auth".to_owned());
        }
        v
    }

    /// A REST client with admin rights, for setup the CLI does not offer
    /// (registering hosts as an agent would).
    pub fn client(&self) -> Client {
        let auth = if self.auth {
            Auth::Password {
                user: ADMIN_USER.into(),
                password: ADMIN_PASSWORD.into(),
                project: Some("admin".into()),
            }
        } else {
            Auth::None
        };
        Client::new(&self.url, auth)
    }

    /// Runs `midonet <flags> <args>`; returns stdout or the error text.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        run_with(&self.flags(), args)
    }

    /// Runs `midonet -o json ...` and parses the output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-o", "json"];
        a.extend_from_slice(args);
        let out = self.run(&a).unwrap_or_else(|e| panic!("midonet {}: {e}", args.join(" ")));
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("midonet {}: not JSON ({e}): {out}", args.join(" ")))
    }

    /// Runs a command that must fail; returns the error text.
    pub fn fails(&self, args: &[&str]) -> String {
        match self.run(args) {
            Ok(out) => panic!("midonet {} should fail, printed: {out}", args.join(" ")),
            Err(e) => e,
        }
    }

    /// Registers a host with one interface, as an agent would (the MidoNet API:
    /// POST /hosts and POST /hosts/{id}/interfaces).
    pub fn register_host(&self, name: &str, addr: &str, iface: &str) -> String {
        let c = self.client();
        let id = uuid::Uuid::new_v4().to_string();
        let host = c
            .create(
                &c.root_link("hosts").expect("hosts link"),
                &serde_json::json!({"id": id, "name": name, "addresses": [addr]}),
            )
            .expect("register host");
        let ifaces = host["interfaces"].as_str().expect("host.interfaces link").to_owned();
        c.post_json(
            &ifaces,
            &serde_json::json!({"name": iface, "mac": "02:00:00:00:77:01", "mtu": 1500}),
        )
        .expect("register interface");
        id
    }
}

/// Runs `midonet` in-process with the given global flags.
pub fn run_with(flags: &[String], args: &[&str]) -> Result<String, String> {
    let mut argv: Vec<String> = vec!["midonet".into()];
    argv.extend(flags.iter().cloned());
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let cli = midonet_cli::Cli::try_parse_from(&argv).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match midonet_cli::run_with_output(cli, &mut out) {
        Ok(()) => Ok(String::from_utf8(out).expect("utf-8 output")),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// The `id` of a JSON object.
pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}
