//! The host's stable identity.
//!
//! The id is created once (a random v4 UUID) and kept in a file, so an agent
//! restart, a reboot or a reinstall of the binary registers the same host and
//! keeps its port bindings. Both a bare UUID and MidoNet's properties form
//! (`host_uuid=<uuid>`, `/etc/midonet_host_id.properties`) are read; we write
//! the bare form.

use std::path::Path;

use midonet_model::HostId;

use crate::error::AgentError;

/// Reads the host id from `path`, creating the file (and its directory) with
/// a new random id if it does not exist.
pub fn load_or_create(path: &Path) -> Result<HostId, AgentError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).ok_or_else(|| AgentError::BadHostId(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = HostId::random();
            write_id(path, id)?;
            tracing::info!(host_id = %id, file = %path.display(), "created host id");
            Ok(id)
        }
        Err(e) => Err(AgentError::Io { what: format!("reading {}", path.display()), source: e }),
    }
}

fn parse(text: &str) -> Option<HostId> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("host_uuid=").unwrap_or(l).trim().parse().ok())
}

fn write_id(path: &Path, id: HostId) -> Result<(), AgentError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::Io {
            what: format!("creating {}", dir.display()),
            source: e,
        })?;
    }
    // Write then rename, so a crash never leaves a half-written id.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| AgentError::Io { what: format!("writing {}", path.display()), source: e })
}

/// The host credential in `path`, if the file exists.
pub fn load_credential(
    path: &Path,
) -> Result<Option<midonet_proto::credential::Token>, AgentError> {
    match std::fs::read_to_string(path) {
        Ok(text) => midonet_proto::credential::Token::parse(&text).map(Some).ok_or_else(|| {
            AgentError::Config(format!(
                "{} does not hold a host credential (mnh1.<host id>.<secret>)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgentError::Io { what: format!("reading {}", path.display()), source: e }),
    }
}

/// The host id: the credential's when there is one (written to `path` if
/// that file does not exist yet), else the file's (created if missing). A
/// file naming another host than the credential is an error: the agent
/// would register as one host and be refused as the other.
pub fn resolve(
    path: &Path,
    credential: Option<&midonet_proto::credential::Token>,
) -> Result<HostId, AgentError> {
    let Some(token) = credential else { return load_or_create(path) };
    let named: HostId = token.host().parse().map_err(|_| {
        AgentError::Config(format!("the credential names `{}`, not a host id", token.host()))
    })?;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id =
                parse(&text).ok_or_else(|| AgentError::BadHostId(path.display().to_string()))?;
            if id != named {
                return Err(AgentError::Config(format!(
                    "the credential is for host {named} but {} holds {id}: enroll {id} \
                     (`midonet host enroll --host-id {id}`) or remove the file",
                    path.display()
                )));
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_id(path, named)?;
            Ok(named)
        }
        Err(e) => Err(AgentError::Io { what: format!("reading {}", path.display()), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/host_id");
        let a = load_or_create(&path).expect("create");
        let b = load_or_create(&path).expect("read back");
        assert_eq!(a, b);
        assert!(!a.is_nil());
    }

    #[test]
    fn properties_form_and_garbage() {
        let id = HostId::random();
        assert_eq!(parse(&format!("# c\nhost_uuid={id}\n")), Some(id));
        assert_eq!(parse("nonsense"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad");
        std::fs::write(&path, "zzz").expect("write");
        assert!(matches!(load_or_create(&path), Err(AgentError::BadHostId(_))));
    }

    #[test]
    fn the_credential_names_the_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("host_id");
        let id = HostId::random();
        let t = midonet_proto::credential::Token::generate(&id.to_string()).expect("uuid");
        assert_eq!(resolve(&path, Some(&t)).expect("fresh host"), id);
        assert_eq!(load_or_create(&path).expect("written"), id, "kept in the id file");
        assert_eq!(resolve(&path, Some(&t)).expect("same again"), id);
        let other = midonet_proto::credential::Token::generate(&HostId::random().to_string())
            .expect("uuid");
        let e = resolve(&path, Some(&other)).expect_err("another host's credential");
        assert!(e.to_string().contains("enroll"), "{e}");
        let cred = dir.path().join("host.credential");
        assert_eq!(load_credential(&cred).expect("absent"), None);
        std::fs::write(&cred, format!("{}\n", t.encode())).expect("write");
        assert_eq!(load_credential(&cred).expect("read"), Some(t));
        std::fs::write(&cred, "junk").expect("write");
        assert!(load_credential(&cred).is_err());
    }
}
