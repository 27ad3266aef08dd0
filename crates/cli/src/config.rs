//! Where the CLI finds its endpoint and credentials.
//!
//! Precedence, highest first: command-line flags, environment variables,
//! the config file, built-in defaults.
//!
//! | setting  | flag         | environment        | config key | default                                 |
//! |----------|--------------|--------------------|------------|-----------------------------------------|
//! | endpoint | `--url`      | `MIDONET_URL`      | `url`      | `http://127.0.0.1:8181/midonet-api`     |
//! | CA       | `--ca`       | `MIDONET_CA`       | `ca`       | none (the built-in public roots)        |
//! | user     | `--user`     | `MIDONET_USER`     | `user`     | none (no login)                         |
//! | password | `--password` | `MIDONET_PASSWORD` | `password` | none                                    |
//! | project  | `--project`  | `MIDONET_PROJECT`  | `project`  | none (no `X-Auth-Project` header)       |
//! | token    | `--token`    | `MIDONET_TOKEN`    | `token`    | none                                    |
//! | output   | `-o`         | `MIDONET_OUTPUT`   | `output`   | `table`                                 |
//!
//! The config file is `--config PATH` (or `MIDONET_CONFIG`), else
//! `$XDG_CONFIG_HOME/midonet/cli.toml`, else `~/.config/midonet/cli.toml`; a
//! missing default file is fine, a missing explicit one is an error. Example:
//!
//! The endpoint may name several cluster replicas, separated by commas: a
//! request that cannot connect to one goes to the next (`midonet_client`).
//! The CA is a PEM file trusted (alone) for `https` endpoints.
//!
//! ```toml
//! url = "https://10.0.0.2:8181/midonet-api,https://10.0.0.3:8181/midonet-api"
//! ca = "/etc/midonet/ca.pem"
//! user = "admin"
//! password = "secret"
//! project = "admin"
//! output = "table"   # or "json", "id"
//! ```
//!
//! Auth is chosen as: `--no-auth` → none; then the first source (command
//! line, environment, file) that holds any credential decides, a token before
//! a user within one source; else none. So `--user` beats `MIDONET_TOKEN`, and
//! either beats the file, whichever kind of credential each holds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use midonet_client::Auth;
use serde::Deserialize;

use crate::{GlobalOpts, Output};

/// The endpoint used when nothing else says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8181/midonet-api";

/// Keys of `cli.toml`. Unknown keys are an error so a typo (`passwd`) does
/// not silently fall back to no auth.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub url: Option<String>,
    pub ca: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub project: Option<String>,
    pub token: Option<String>,
    pub output: Option<Output>,
}

/// Effective settings after merging flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub ca: Option<PathBuf>,
    pub auth: Auth,
    pub output: Output,
    /// The file that was read, if any (named in error hints).
    pub config_file: Option<PathBuf>,
}

/// The default config file location.
pub fn default_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("midonet/cli.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/midonet/cli.toml"))
}

impl Settings {
    /// The API client these settings describe.
    pub fn client(&self) -> anyhow::Result<midonet_client::Client> {
        let client = midonet_client::Client::new(&self.url, self.auth.clone());
        match &self.ca {
            Some(ca) => Ok(client.with_ca(ca)?),
            None => Ok(client),
        }
    }
}

/// Reads a config file.
pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Merges flags (which already include the environment, via clap) with the
/// config file and defaults.
pub fn resolve(g: &GlobalOpts) -> anyhow::Result<Settings> {
    let (file, config_file) = match &g.config {
        Some(p) => (load(p)?, Some(p.clone())),
        None => match default_path().filter(|p| p.exists()) {
            Some(p) => (load(&p)?, Some(p)),
            None => (FileConfig::default(), None),
        },
    };
    merge(g, file, config_file)
}

fn merge(
    g: &GlobalOpts,
    file: FileConfig,
    config_file: Option<PathBuf>,
) -> anyhow::Result<Settings> {
    let url = g.url.clone().or(file.url.clone()).unwrap_or_else(|| DEFAULT_URL.to_owned());
    let project = g.project.clone().or(file.project.clone());
    let password = g.password.clone().or(file.password.clone());
    let login = |user: String| -> anyhow::Result<Auth> {
        match &password {
            Some(p) => Ok(Auth::Password { user, password: p.clone(), project: project.clone() }),
            None => bail!(
                "user `{user}` given without a password: pass --password, set MIDONET_PASSWORD, \
                 or put `password` in the config file"
            ),
        }
    };
    // Command line, then environment, then file; within each, a token
    // before a user.
    let cmdline_token = g.token.as_ref().filter(|_| !g.token_from_env);
    let cmdline_user = g.user.as_ref().filter(|_| !g.user_from_env);
    let auth = if g.no_auth {
        Auth::None
    } else if let Some(t) = cmdline_token {
        Auth::Token(t.clone())
    } else if let Some(u) = cmdline_user {
        login(u.clone())?
    } else if let Some(t) = &g.token {
        Auth::Token(t.clone())
    } else if let Some(u) = &g.user {
        login(u.clone())?
    } else if let Some(t) = &file.token {
        Auth::Token(t.clone())
    } else if let Some(u) = &file.user {
        login(u.clone())?
    } else {
        Auth::None
    };
    Ok(Settings {
        url,
        ca: g.ca.clone().or(file.ca),
        auth,
        output: g.output.or(file.output).unwrap_or(Output::Table),
        config_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> GlobalOpts {
        GlobalOpts::default()
    }

    #[test]
    fn defaults_without_anything() {
        let s = merge(&opts(), FileConfig::default(), None).expect("ok");
        assert_eq!(s.url, DEFAULT_URL);
        assert_eq!(s.auth, Auth::None);
        assert_eq!(s.output, Output::Table);
    }

    #[test]
    fn file_supplies_what_flags_do_not() {
        let file: FileConfig = toml::from_str(
            "url = \"http://h:1/api\"\nuser = \"admin\"\npassword = \"pw\"\nproject = \"p\"\noutput = \"json\"\n",
        )
        .expect("valid toml");
        let s = merge(&opts(), file.clone(), None).expect("ok");
        assert_eq!(s.url, "http://h:1/api");
        assert_eq!(s.output, Output::Json);
        assert_eq!(
            s.auth,
            Auth::Password {
                user: "admin".into(),
                password: "pw".into(),
                project: Some("p".into())
            }
        );
        // A flag token beats a file user; --no-auth beats everything.
        let mut g = opts();
        g.token = Some("tok".into());
        assert_eq!(merge(&g, file.clone(), None).expect("ok").auth, Auth::Token("tok".into()));
        g.no_auth = true;
        assert_eq!(merge(&g, file, None).expect("ok").auth, Auth::None);
    }

    #[test]
    fn command_line_user_beats_environment_token() {
        let mut g = opts();
        g.token = Some("env-tok".into());
        g.token_from_env = true;
        g.user = Some("admin".into());
        g.password = Some("pw".into());
        assert!(matches!(
            merge(&g, FileConfig::default(), None).expect("ok").auth,
            Auth::Password { .. }
        ));
        g.user_from_env = true;
        assert_eq!(
            merge(&g, FileConfig::default(), None).expect("ok").auth,
            Auth::Token("env-tok".into())
        );
    }

    #[test]
    fn user_without_password_is_an_error_naming_the_fix() {
        let mut g = opts();
        g.user = Some("admin".into());
        let e = merge(&g, FileConfig::default(), None).expect_err("no password");
        assert!(e.to_string().contains("MIDONET_PASSWORD"), "{e}");
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("passwd = \"x\"").is_err());
    }

    #[test]
    fn explicit_missing_config_file_is_an_error() {
        let mut g = opts();
        g.config = Some(PathBuf::from("/nonexistent/midonet/cli.toml"));
        let e = resolve(&g).expect_err("missing file");
        assert!(format!("{e:#}").contains("/nonexistent/midonet/cli.toml"), "{e:#}");
    }
}
