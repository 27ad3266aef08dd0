//! The client over HTTPS with `with_ca` (the CLI's `--ca`): it trusts the
//! cluster's own CA, and without that CA the same request fails.

use midonet_client::{Auth, Client, ClientError};
use midonet_cluster::testing::ServedCluster;

#[test]
fn a_given_ca_is_trusted_and_nothing_else_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = midonet_proto::tls::generate(&["127.0.0.1".into()])
        .expect("certificates")
        .write(dir.path())
        .expect("write");
    let server = ServedCluster::start_https(&pki.cert, &pki.key, false);

    let url = format!("https://127.0.0.1:{}/midonet-api", server.api);
    let client = Client::new(&url, Auth::None).with_ca(&pki.ca).expect("the CA loads");
    let root = client.root().expect("an HTTPS answer");
    assert!(root["bridges"].is_string());
    let br = client.create("bridges", &serde_json::json!({"name": "tls"})).expect("create");
    assert_eq!(br["name"], "tls");

    // The built-in public roots do not vouch for the sandbox-style CA.
    let untrusting = Client::new(&url, Auth::None);
    let err = untrusting.list("bridges").expect_err("an unknown CA is refused");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "says why: {err}");
    // A CA file that holds no certificate is a clear error, not a panic.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let err = Client::new(&url, Auth::None).with_ca(&empty).expect_err("empty CA file");
    assert!(err.to_string().contains("no certificate"), "{err}");

    server.stop();
}
