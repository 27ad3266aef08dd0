//! TLS for the topology service: server and client configurations from PEM
//! files, and a small private PKI (a CA and one server certificate) for the
//! sandbox and the tests, so that nobody has to run `openssl` to try the
//! system with TLS on.
//!
//! ```text
//!  generate(["10.0.0.254", "localhost"]) ─> ca.pem, server.pem, server.key
//!  cluster: [grpc] tls_cert = server.pem, tls_key = server.key
//!  agent:   cluster_ca = ca.pem, cluster = ["https://10.0.0.254:8182"]
//! ```
//!
//! Clients check the server's name against the address they dial (an IP
//! address is a subject alternative name like any other). A deployment
//! brings its own certificates; nothing here is needed then.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A file that could not be read or written, or a certificate that could
/// not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating certificates")]
    Generate(#[from] rcgen::Error),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io { what, path: path.to_owned(), source })
}

/// The server side: its certificate chain and private key (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerTlsConfig, TlsError> {
    let cert = read("reading the TLS certificate", cert)?;
    let key = read("reading the TLS key", key)?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
}

/// The client side: trust exactly the CA in `ca` (PEM), not the system's
/// roots.
pub fn client_config(ca: &Path) -> Result<ClientTlsConfig, TlsError> {
    let ca = read("reading the cluster CA", ca)?;
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
}

/// A CA and a server certificate it signed, in PEM.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where [`Pki::write`] put the files.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A new CA, and a server certificate for `names` (host names or IP
/// addresses) signed by it.
pub fn generate(names: &[String]) -> Result<Pki, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "midonet private CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut server = CertificateParams::new(names.to_vec())?;
    server.distinguished_name.push(DnType::CommonName, "midonet cluster");
    let cert = server.signed_by(&key, &issuer)?;
    Ok(Pki { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

impl Pki {
    /// Writes `ca.pem`, `server.pem` and `server.key` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<PkiFiles, TlsError> {
        let files = PkiFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| TlsError::Io { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        std::fs::write(&files.ca, &self.ca_pem).map_err(io("writing", &files.ca))?;
        std::fs::write(&files.cert, &self.cert_pem).map_err(io("writing", &files.cert))?;
        write_private(&files.key, self.key_pem.as_bytes()).map_err(io("writing", &files.key))?;
        Ok(files)
    }
}

/// Writes a file only its owner can read (keys, credentials).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
