//! Host credentials: what an agent presents on every call to the topology
//! service, and how the cluster checks it.
//!
//! ```text
//!  admin ── POST /hosts/<id>/credential ──> cluster: secret S (32 random bytes)
//!                                            store meta/host_credentials/<id> = sha256(S)
//!        <── "mnh1.<id>.<hex S>" ─────────── shown once; written to the agent's credential file
//!  agent ── any RPC, metadata `authorization: Bearer mnh1.<id>.<hex S>` ──> cluster
//!                                            sha256(S) == stored digest?  → the caller is host <id>
//! ```
//!
//! The token names its host, so the cluster needs one key read to check it
//! and nothing else: no session table, no replica-local memory (any replica
//! checks any agent). Only the digest is stored, so a store backup does not
//! hand out credentials. Issuing again replaces the digest (rotation);
//! deleting it revokes the host.

use std::fmt;

use sha2::{Digest, Sha256};

/// Version tag at the head of every token.
pub const PREFIX: &str = "mnh1";
/// The gRPC metadata key the token travels in (as `Bearer <token>`).
pub const METADATA_KEY: &str = "authorization";

/// A host's credential: the host id it names and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Canonical (lowercase, hyphenated) UUID text.
    host: String,
    secret: [u8; 32],
}

// Never print the secret, even in a debug log.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}, <secret>)", self.host)
    }
}

impl Token {
    /// A new random credential for `host` (a UUID in canonical form).
    pub fn generate(host: &str) -> Option<Token> {
        Some(Token { host: canonical_uuid(host)?, secret: rand::random() })
    }

    /// Reads `mnh1.<host>.<64 hex digits>` (surrounding whitespace, such as
    /// a file's final newline, is ignored).
    pub fn parse(s: &str) -> Option<Token> {
        let mut it = s.trim().splitn(3, '.');
        if it.next()? != PREFIX {
            return None;
        }
        let host = canonical_uuid(it.next()?)?;
        let secret = unhex32(it.next()?)?;
        Some(Token { host, secret })
    }

    /// The host this credential names (canonical lowercase UUID).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The text form, as [`Token::parse`] reads it.
    pub fn encode(&self) -> String {
        format!("{PREFIX}.{}.{}", self.host, hex(&self.secret))
    }

    /// What the cluster stores: hex of sha256 of the secret.
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(self.secret))
    }

    /// Whether this token's secret hashes to `digest`, compared in time that
    /// does not depend on where they differ.
    pub fn matches(&self, digest: &str) -> bool {
        let mine = self.digest();
        mine.len() == digest.len()
            && mine.bytes().zip(digest.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The metadata value: `Bearer <token>`.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.encode())
    }

    /// The token in an `authorization` metadata value, if it holds one.
    pub fn from_bearer(value: &str) -> Option<Token> {
        Token::parse(value.strip_prefix("Bearer ")?)
    }
}

/// Lowercase hex of `bytes` (also how revoked user tokens are named).
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Exactly 64 hex digits as 32 bytes.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A hyphenated UUID (8-4-4-4-12 hex digits, either case) in canonical
/// lowercase; the other forms the `uuid` crate reads are refused.
fn canonical_uuid(s: &str) -> Option<String> {
    (s.len() == 36).then(|| uuid::Uuid::try_parse(s).ok()).flatten().map(|u| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "6F1C1D2E-0000-4000-8000-000000000001";

    #[test]
    fn round_trip_and_digest() {
        let t = Token::generate(H).expect("uuid");
        assert_eq!(t.host(), H.to_ascii_lowercase());
        let text = t.encode();
        assert!(text.starts_with("mnh1.6f1c1d2e-"), "{text}");
        let back = Token::parse(&format!("{text}\n")).expect("parses");
        assert_eq!(back, t);
        assert!(back.matches(&t.digest()));
        let other = Token::generate(H).expect("uuid");
        assert!(!other.matches(&t.digest()), "another secret does not match");
        assert!(!t.matches(""), "an empty digest matches nothing");
        assert_eq!(Token::from_bearer(&t.bearer()), Some(t.clone()));
        assert!(!format!("{t:?}").contains(&text[text.len() - 64..]), "Debug hides the secret");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = Token::generate(H).expect("uuid").encode();
        for bad in [
            "",
            "mnh1",
            "mnh2.6f1c1d2e-0000-4000-8000-000000000001.00",
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replace("mnh1.6f1c1d2e", "mnh1.6f1c1d2g"),
            &format!("{}zz", &good[..good.len() - 2]),
            "mnh1.not-a-uuid.0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Token::from_bearer(&good), None, "no Bearer prefix");
    }
}
