//! The topology service as an intruder on the underlay meets it: a raw gRPC
//! client, over TLS, with no credential, with another host's credential or
//! session, and with a credential of its own used on objects that are not
//! its host's. Every state-changing call is refused, counted, and changes
//! nothing; the same calls made properly succeed.

use std::sync::Arc;

use midonet_cluster::host_credentials;
use midonet_cluster::metrics::Refused;
use midonet_cluster::topology_service::{serve, AgentAuth, ServeOptions};
use midonet_model::topology::Stored;
use midonet_model::*;
use midonet_proto::credential::{Token, METADATA_KEY};
use midonet_proto::{keys, pb, TopologyClient};
use midonet_store::Store;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

type Auth = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send + Sync>;
type Client = TopologyClient<InterceptedService<Channel, Auth>>;

struct Lab {
    store: Arc<dyn Store>,
    channel: Channel,
    refused: Refused,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn lab() -> Lab {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = midonet_proto::tls::generate(&["127.0.0.1".into(), "localhost".into()])
        .expect("certificates");
    let files = pki.write(dir.path()).expect("write pki");
    let store = midonet_store::connect("memory:").await.expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let refused = Refused::default();
    let opts = ServeOptions {
        auth: AgentAuth::Credentials,
        tls: Some(midonet_proto::tls::server_config(&files.cert, &files.key).expect("tls")),
        refused: refused.clone(),
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let s = store.clone();
    tokio::spawn(async move {
        serve(s, listener, opts, async move {
            let _ = rx.await;
        })
        .await
        .expect("serve")
    });
    // Plain HTTP/2 to a TLS listener gets nowhere.
    let plain = Endpoint::from_shared(format!("http://{addr}")).expect("uri");
    let mut c = TopologyClient::new(plain.connect_lazy());
    let e = c.keep_alive(pb::KeepAliveRequest::default()).await.expect_err("plain refused");
    assert!(matches!(e.code(), Code::Unavailable | Code::Unknown), "{e}");
    let tls = midonet_proto::tls::client_config(&files.ca).expect("client tls");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("TLS connect with the private CA");
    Lab { store, channel, refused, _stop: stop, _dir: dir }
}

impl Lab {
    fn client(&self, authorization: Option<String>) -> Client {
        let f: Auth = Box::new(move |mut r: Request<()>| {
            if let Some(v) = &authorization {
                r.metadata_mut().insert(METADATA_KEY, v.parse().expect("ascii"));
            }
            Ok(r)
        });
        TopologyClient::with_interceptor(self.channel.clone(), f)
    }

    async fn put<T: Stored + serde::Serialize>(&self, o: &T) {
        let v = serde_json::to_vec(o).expect("json");
        self.store.put(o.store_key().as_bytes(), &v, None).await.expect("put");
    }

    async fn exists(&self, key: &str) -> bool {
        self.store.get(key.as_bytes()).await.expect("get").is_some()
    }
}

fn register(host: HostId) -> pb::RegisterHostRequest {
    pb::RegisterHostRequest {
        host_id: host.to_string(),
        name: "h".into(),
        addresses: vec!["10.0.0.1".into()],
        ttl_secs: 30,
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, Status>) -> Code {
    r.expect_err("refused").code()
}

#[tokio::test]
async fn every_state_change_needs_the_hosts_own_credential() {
    let lab = lab().await;
    let (a, b) = (HostId::random(), HostId::random());
    let ta = host_credentials::issue(&lab.store, a).await.expect("enroll a");
    let tb = host_credentials::issue(&lab.store, b).await.expect("enroll b");

    // Two tenants' bridges, a port of each bound to its host, a router.
    let br1 = Bridge { id: BridgeId::random(), admin_state_up: true, ..Default::default() };
    let br2 = Bridge { id: BridgeId::random(), admin_state_up: true, ..Default::default() };
    let router = Router { id: RouterId::random(), admin_state_up: true, ..Default::default() };
    let port = |dev: DeviceId, host: HostId| Port {
        id: PortId::random(),
        device_id: dev,
        host_id: Some(host),
        interface_name: Some("tap0".into()),
        admin_state_up: true,
        ..Default::default()
    };
    let pa = port(br1.id.cast(), a);
    let pb_ = port(br2.id.cast(), b);
    for o in [&pa, &pb_] {
        lab.put(o).await;
    }
    lab.put(&br1).await;
    lab.put(&br2).await;
    lab.put(&router).await;

    // Nobody: every call, reads included, is unauthenticated.
    let mut anon = lab.client(None);
    let sub = pb::SubscribeRequest { from_revision: 0, host_id: String::new() };
    assert_eq!(code(anon.subscribe(sub.clone()).await), Code::Unauthenticated);
    assert_eq!(code(anon.register_host(register(a)).await), Code::Unauthenticated);
    let forged = Token::generate(&a.to_string()).expect("uuid");
    let mut forger = lab.client(Some(forged.bearer()));
    assert_eq!(code(forger.register_host(register(a)).await), Code::Unauthenticated);
    let mut junk = lab.client(Some("Bearer mnh1.x.y".into()));
    assert_eq!(code(junk.subscribe(sub.clone()).await), Code::Unauthenticated);
    assert!(!lab.exists(&keys::host_alive(&a.to_string())).await, "nothing registered");
    assert_eq!(lab.refused.get("RegisterHost", "missing"), 1);
    assert_eq!(lab.refused.get("RegisterHost", "unknown"), 1);
    assert_eq!(lab.refused.get("Subscribe", "malformed"), 1);

    // A real host cannot register as another.
    let mut ca = lab.client(Some(ta.bearer()));
    let mut cb = lab.client(Some(tb.bearer()));
    assert_eq!(code(ca.register_host(register(b)).await), Code::PermissionDenied);
    let sa = ca.register_host(register(a)).await.expect("a registers").into_inner().session;
    let sb = cb.register_host(register(b)).await.expect("b registers").into_inner().session;
    let host_b: Host = serde_json::from_slice(
        &lab.store
            .get(ObjectKind::Host.key(&[&b.to_string()]).as_bytes())
            .await
            .expect("get")
            .expect("b")
            .value,
    )
    .expect("host");
    assert_eq!(host_b.addresses.len(), 1, "b's record untouched by a's attempt");

    // Sessions are the host's own.
    let ka = |s: i64, h: HostId| pb::KeepAliveRequest { session: s, host_id: h.to_string() };
    assert_eq!(code(ca.keep_alive(ka(sb, b)).await), Code::NotFound, "b's session via a");
    ca.keep_alive(ka(sa, a)).await.expect("own session");

    // Port activity: only for the host's own bound ports.
    let active = |s: i64, h: HostId, p: PortId, up: bool| pb::SetPortActiveRequest {
        session: s,
        host_id: h.to_string(),
        port_id: p.to_string(),
        active: up,
    };
    assert_eq!(code(ca.set_port_active(active(sa, b, pb_.id, true)).await), Code::PermissionDenied);
    assert_eq!(code(ca.set_port_active(active(sb, a, pb_.id, true)).await), Code::NotFound);
    assert_eq!(code(ca.set_port_active(active(sa, a, pb_.id, true)).await), Code::PermissionDenied);
    assert!(!lab.exists(&keys::port_active(&pb_.id.to_string())).await);
    ca.set_port_active(active(sa, a, pa.id, true)).await.expect("own port");
    cb.set_port_active(active(sb, b, pb_.id, true)).await.expect("b's own port");
    assert_eq!(
        code(ca.set_port_active(active(sa, a, pb_.id, false)).await),
        Code::PermissionDenied,
        "nor clear another host's"
    );
    assert!(lab.exists(&keys::port_active(&pb_.id.to_string())).await);
    assert_eq!(lab.refused.get("SetPortActive", "port_not_bound"), 1);

    // MACs: the cross-tenant redirect of the issue is refused.
    let mac = |s: i64, br: BridgeId, p: PortId, delete: bool| pb::PublishMacRequest {
        session: s,
        bridge_id: br.to_string(),
        vlan: 0,
        mac: "02:00:00:00:00:99".into(),
        port_id: p.to_string(),
        delete,
    };
    assert_eq!(code(ca.publish_mac(mac(sa, br1.id, pb_.id, false)).await), Code::PermissionDenied);
    assert_eq!(code(ca.publish_mac(mac(sa, br2.id, pb_.id, false)).await), Code::PermissionDenied);
    assert_eq!(code(ca.publish_mac(mac(sb, br1.id, pa.id, false)).await), Code::NotFound);
    let key1 = keys::mac_entry(&br1.id.to_string(), 0, "02:00:00:00:00:99");
    let key2 = keys::mac_entry(&br2.id.to_string(), 0, "02:00:00:00:00:99");
    assert!(!lab.exists(&key1).await && !lab.exists(&key2).await);
    assert_eq!(lab.refused.get("PublishMac", "port_not_on_bridge"), 1);
    assert_eq!(lab.refused.get("PublishMac", "port_not_bound"), 1);
    ca.publish_mac(mac(sa, br1.id, pa.id, false)).await.expect("own port on own bridge");
    let e: midonet_proto::MacEntry = serde_json::from_slice(
        &lab.store.get(key1.as_bytes()).await.expect("get").expect("entry").value,
    )
    .expect("entry");
    assert_eq!(e.host_id, a.to_string(), "the entry names its publisher");
    assert_eq!(code(cb.publish_mac(mac(sb, br1.id, pa.id, true)).await), Code::PermissionDenied);
    assert!(lab.exists(&key1).await, "b cannot delete a's entry");

    // ARP: only on devices that exist; another live host's entry stays.
    let arp = |s: i64, dev: uuid::Uuid, delete: bool| pb::PublishArpRequest {
        session: s,
        device_id: dev.to_string(),
        ip: "10.0.0.9".into(),
        mac: "02:00:00:00:00:09".into(),
        delete,
    };
    assert_eq!(
        code(ca.publish_arp(arp(sa, uuid::Uuid::new_v4(), false)).await),
        Code::PermissionDenied
    );
    ca.publish_arp(arp(sa, router.id.uuid(), false)).await.expect("router entry");
    assert_eq!(code(cb.publish_arp(arp(sb, router.id.uuid(), true)).await), Code::PermissionDenied);
    assert!(lab.exists(&keys::arp_entry(&router.id.to_string(), "10.0.0.9")).await);

    // Claims and interface reports are the host's own.
    let snat = pb::ClaimSnatBlockRequest {
        session: sa,
        host_id: b.to_string(),
        device_id: router.id.to_string(),
        ip: "203.0.113.1".into(),
        block: 1,
        release: false,
    };
    assert_eq!(code(ca.claim_snat_block(snat).await), Code::PermissionDenied);
    let ifaces =
        pb::ReportInterfacesRequest { session: sa, host_id: b.to_string(), interfaces: vec![] };
    assert_eq!(code(ca.report_interfaces(ifaces).await), Code::PermissionDenied);

    // Reading: a host subscribes as itself only.
    let as_b = pb::SubscribeRequest { from_revision: 0, host_id: b.to_string() };
    assert_eq!(code(ca.subscribe(as_b).await), Code::PermissionDenied);
    let mut s = ca
        .subscribe(pb::SubscribeRequest { from_revision: 0, host_id: a.to_string() })
        .await
        .expect("own subscription")
        .into_inner();
    let first = s.message().await.expect("ok").expect("message");
    assert!(matches!(first.event, Some(pb::subscribe_response::Event::Snapshot(_))));

    // Revoked: the session ends at once, and after the check cache the
    // credential no longer opens anything.
    assert!(host_credentials::revoke(&lab.store, a).await.expect("revoke"));
    assert_eq!(code(ca.keep_alive(ka(sa, a)).await), Code::NotFound);
    tokio::time::sleep(host_credentials::CACHE_TTL + std::time::Duration::from_millis(100)).await;
    assert_eq!(code(ca.register_host(register(a)).await), Code::Unauthenticated);
    cb.keep_alive(ka(sb, b)).await.expect("b unaffected");
}
