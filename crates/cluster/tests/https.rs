//! The REST and Neutron APIs over HTTPS (`[api_tls]`): a client trusting the
//! cluster's CA gets answers on both listeners; plain HTTP does not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_cluster::config::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[test]
fn rest_and_neutron_answer_over_https_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = midonet_proto::tls::generate(&["127.0.0.1".into()])
        .expect("certificates")
        .write(dir.path())
        .expect("write");
    let (api, grpc, neutron) = (free_port(), free_port(), free_port());
    let mut cfg = Config {
        listen: format!("127.0.0.1:{api}").parse().expect("addr"),
        grpc_listen: format!("127.0.0.1:{grpc}").parse().expect("addr"),
        neutron_listen: format!("127.0.0.1:{neutron}"),
        store: "memory:".into(),
        ..Config::default()
    };
    cfg.auth.enabled = false;
    cfg.api_tls.cert = pki.cert.display().to_string();
    cfg.api_tls.key = pki.key.display().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(midonet_cluster::tasks::run(cfg, async move {
            let _ = stopped.await;
        }))
    });

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
    let deadline = Instant::now() + Duration::from_secs(20);
    let root = loop {
        match agent.get(&format!("https://127.0.0.1:{api}/midonet-api")).call() {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no HTTPS answer: {e}"),
        }
    };
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
    let _ = stop.send(());
    server.join().expect("server thread").expect("clean stop");
}
