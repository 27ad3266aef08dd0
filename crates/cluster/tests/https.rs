//! The REST and Neutron APIs over HTTPS (`[api_tls]`): a client trusting the
//! cluster's CA gets answers on both listeners; plain HTTP does not.

use std::sync::Arc;
use std::time::Duration;

use midonet_cluster::testing::ServedCluster;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

#[test]
fn rest_and_neutron_answer_over_https_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = midonet_proto::tls::generate(&["127.0.0.1".into()])
        .expect("certificates")
        .write(dir.path())
        .expect("write");
    let server = ServedCluster::start_https(&pki.cert, &pki.key, true);
    let (api, neutron) = (server.api, server.neutron);

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca).expect("ca") {
        roots.add(c.expect("pem")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let agent = ureq::AgentBuilder::new()
        .tls_config(Arc::new(client))
        .timeout(Duration::from_secs(5))
        .build();
    let root =
        agent.get(&format!("https://127.0.0.1:{api}/midonet-api")).call().expect("an HTTPS answer");
    assert_eq!(root.status(), 200);
    // Its links name the scheme it is served over: clients follow them.
    let root: serde_json::Value = root.into_json().expect("json");
    let bridges = root["bridges"].as_str().expect("bridges link");
    assert!(bridges.starts_with(&format!("https://127.0.0.1:{api}/")), "{bridges}");
    let r = agent
        .post(&format!("https://127.0.0.1:{api}/midonet-api/bridges"))
        .set("Content-Type", "application/json")
        .send_string(r#"{"name":"over-tls"}"#)
        .expect("create over https");
    assert_eq!(r.status(), 201);
    let location = r.header("Location").unwrap_or_default().to_owned();
    assert!(location.starts_with("https://"), "Location {location}");
    let nets = agent
        .get(&format!("https://127.0.0.1:{neutron}/v2.0/networks"))
        .call()
        .expect("neutron over https");
    assert_eq!(nets.status(), 200);
    assert!(
        ureq::get(&format!("http://127.0.0.1:{api}/midonet-api")).call().is_err(),
        "plain HTTP gets no API answer"
    );
    // A client that does not trust the CA is refused by its own check.
    assert!(ureq::get(&format!("https://127.0.0.1:{api}/midonet-api")).call().is_err());
    server.stop();
}
