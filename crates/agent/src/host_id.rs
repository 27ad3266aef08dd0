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
                .map_err(|e| AgentError::Io {
                    what: format!("writing {}", path.display()),
                    source: e,
                })?;
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
}
