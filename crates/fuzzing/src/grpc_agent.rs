//! `grpc_agent`: the gRPC requests the cluster accepts from agents
//! (`midonet.topology.v1.Topology`), decoded by prost and checked by
//! `cluster::agent_input` exactly as the service does before it writes.
//!
//! ```text
//!  [request selector (1)] [protobuf message]
//!   0 Subscribe  1 RegisterHost  2 KeepAlive  3 ReportInterfaces
//!   4 SetPortActive  5 PublishMac  6 PublishArp  7 ClaimSnatBlock
//! ```
//!
//! Every input is also read as the `authorization` metadata value every
//! call carries (a host credential, `Bearer mnh1.<host>.<hex>`).
//!
//! What must hold:
//!
//! * a credential that parses names a UUID host, encodes back to the same
//!   token, and matches its own digest and no other;
//! * prost: decode → encode → decode gives the same message;
//! * a rejected request names one of its own fields;
//! * what would be written is well formed: host interfaces validate, have
//!   one key per name and decode back (also through `Topology::apply`);
//!   the host record decodes as a valid `Host` that keeps what operators
//!   set; state keys parse back (`keys::parse`) to the request's ids, and
//!   their values decode.

use std::fmt::Debug;

use midonet_cluster::agent_input::{self, InputError, StateWrite, MAX_TTL, MIN_TTL};
use midonet_model::{Host, HostInterface, ObjectKind, Topology, Validate};
use midonet_proto::keys::{self, StateKey};
use midonet_proto::{pb, ArpEntry, Liveness, MacEntry};
use prost::Message;

pub fn grpc_agent(data: &[u8]) {
    credential(data);
    let Some((&sel, bytes)) = data.split_first() else { return };
    match sel % 10 {
        0 => {
            let _ = decode::<pb::SubscribeRequest>(bytes);
        }
        1 => {
            if let Some(req) = decode::<pb::RegisterHostRequest>(bytes) {
                register(&req);
            }
        }
        2 => {
            let _ = decode::<pb::KeepAliveRequest>(bytes);
        }
        3 => {
            if let Some(req) = decode::<pb::ReportInterfacesRequest>(bytes) {
                match agent_input::report_interfaces(&req) {
                    Ok((host, ifaces)) => interfaces(&host.to_string(), &ifaces),
                    Err(e) => named(&e, &["host_id"]),
                }
            }
        }
        4 => {
            if let Some(req) = decode::<pb::SetPortActiveRequest>(bytes) {
                port_active(&req);
            }
        }
        5 => {
            if let Some(req) = decode::<pb::PublishMacRequest>(bytes) {
                mac(&req);
            }
        }
        6 => {
            if let Some(req) = decode::<pb::PublishArpRequest>(bytes) {
                arp(&req);
            }
        }
        7 => {
            if let Some(req) = decode::<pb::ClaimSnatBlockRequest>(bytes) {
                snat(&req);
            }
        }
        8 => {
            if let Some(req) = decode::<pb::ClaimHealthCheckRequest>(bytes) {
                health_claim(&req);
            }
        }
        _ => {
            if let Some(req) = decode::<pb::ReportMemberStatusRequest>(bytes) {
                member_status(&req);
            }
        }
    }
}

fn credential(data: &[u8]) {
    use midonet_proto::credential::Token;
    let text = String::from_utf8_lossy(data);
    let Some(t) = Token::from_bearer(&text) else { return };
    assert!(t.host().parse::<uuid::Uuid>().is_ok(), "{t:?}");
    let again = Token::parse(&t.encode()).expect("an encoded token parses");
    assert_eq!(again, t);
    assert!(t.matches(&t.digest()));
    let other = Token::generate(t.host()).expect("the host is a UUID");
    assert!(!other.matches(&t.digest()) || other == t);
}

fn health_claim(req: &pb::ClaimHealthCheckRequest) {
    let c = match agent_input::claim_health_check(req) {
        Ok(c) => c,
        Err(e) => return named(&e, &["host_id", "load_balancer_id"]),
    };
    let lb = canonical_uuid(&req.load_balancer_id);
    let Some(StateKey::LbChecker { lb: l }) = keys::parse(&c.key) else {
        panic!("a checker key: {}", c.key);
    };
    assert_eq!(l, lb);
    assert_eq!(c.release, req.release);
    let v: Liveness = serde_json::from_slice(&c.value).expect("liveness decodes");
    assert_eq!(v.host_id, canonical_uuid(&req.host_id));
}

fn member_status(req: &pb::ReportMemberStatusRequest) {
    match agent_input::report_member_status(req) {
        Ok(m) => {
            assert!(matches!(m.status, "UP" | "DOWN"));
            assert_eq!(m.status, req.status);
            assert_eq!(m.member.to_string(), canonical_uuid(&req.member_id));
        }
        Err(e) => named(&e, &["host_id", "load_balancer_id", "member_id", "status"]),
    }
}

fn decode<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) -> Option<M> {
    let m = M::decode(bytes).ok()?;
    let again = M::decode(m.encode_to_vec().as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again, m, "prost decode → encode → decode");
    Some(m)
}

fn named(e: &InputError, fields: &[&str]) {
    assert!(fields.contains(&e.field), "`{}` is not a field of the request: {e}", e.field);
    let status: tonic::Status = e.clone().into();
    assert!(status.message().starts_with(e.field), "the message names the field: {e}");
}

fn register(req: &pb::RegisterHostRequest) {
    let reg = match agent_input::register_host(req) {
        Ok(r) => r,
        Err(e) => return named(&e, &["host_id", "name", "datapath"]),
    };
    assert!(reg.datapath.is_empty() || midonet_proto::DATAPATHS.contains(&reg.datapath.as_str()));
    assert_eq!(Some(reg.host.uuid()), req.host_id.parse().ok(), "host id");
    assert!((MIN_TTL..=MAX_TTL).contains(&reg.ttl_secs), "ttl {}", reg.ttl_secs);
    interfaces(&reg.host.to_string(), &reg.interfaces);

    let fresh: Host = serde_json::from_slice(&agent_input::host_record(None, &reg))
        .expect("a fresh host record decodes");
    assert_eq!((fresh.id, &fresh.name, &fresh.addresses), (reg.host, &reg.name, &reg.addresses));
    assert_eq!(fresh.validate(), Ok(()), "the host record validates");
    let stored = br#"{"id":"x","name":"old","floodingProxyWeight":7,"containerLimit":3}"#;
    let merged: Host = serde_json::from_slice(&agent_input::host_record(Some(stored), &reg))
        .expect("a merged host record decodes");
    assert_eq!((merged.flooding_proxy_weight, merged.container_limit), (7, 3), "operator fields");
    assert_eq!((merged.id, &merged.name), (reg.host, &reg.name));
}

fn interfaces(host: &str, ifaces: &[HostInterface]) {
    let mut topo = Topology::default();
    for (i, hi) in ifaces.iter().enumerate() {
        assert_eq!(hi.validate(), Ok(()), "{hi:?}");
        assert!(ifaces[..i].iter().all(|o| o.name != hi.name), "one entry per name");
        let (key, value) = agent_input::interface_kv(hi);
        let (kind, parts) = ObjectKind::parse_key(&key).expect("interface keys parse");
        assert_eq!((kind, parts), (ObjectKind::HostInterface, vec![host, hi.name.as_str()]));
        let back: HostInterface = serde_json::from_slice(&value).expect("interface JSON decodes");
        assert_eq!(&back, hi, "interface JSON round trip");
        topo.apply(&key, Some(&value)).expect("agents decode stored interfaces");
    }
}

fn port_active(req: &pb::SetPortActiveRequest) {
    let w = match agent_input::set_port_active(req) {
        Ok(w) => w,
        Err(e) => return named(&e, &["port_id"]),
    };
    let port = canonical_uuid(&req.port_id);
    assert_eq!(keys::parse(&w.key), Some(StateKey::PortActive { port: &port }));
    assert_eq!(w.value.is_some(), req.active);
    if let Some(v) = &w.value {
        let l: Liveness = serde_json::from_slice(v).expect("liveness decodes");
        assert_eq!((l.host_id.as_str(), l.session), (req.host_id.as_str(), req.session));
    }
}

fn mac(req: &pb::PublishMacRequest) {
    let w = match agent_input::publish_mac(req) {
        Ok(w) => w,
        Err(e) => return named(&e, &["bridge_id", "mac", "vlan", "port_id"]),
    };
    let bridge = canonical_uuid(&req.bridge_id);
    let Some(StateKey::Mac { bridge: b, vlan, mac }) = keys::parse(&w.key) else {
        panic!("a MAC table key: {}", w.key);
    };
    assert_eq!((b, u32::from(vlan)), (bridge.as_str(), req.vlan));
    assert!(mac.parse::<midonet_model::MacAddr>().is_ok(), "the key's MAC parses: {mac}");
    state_value::<MacEntry>(&w, req.delete);
}

fn arp(req: &pb::PublishArpRequest) {
    let w = match agent_input::publish_arp(req) {
        Ok(w) => w,
        Err(e) => return named(&e, &["device_id", "ip", "mac"]),
    };
    let device = canonical_uuid(&req.device_id);
    let Some(StateKey::Arp { device: d, ip }) = keys::parse(&w.key) else {
        panic!("an ARP table key: {}", w.key);
    };
    assert_eq!(d, device);
    assert_eq!(ip.parse::<std::net::Ipv4Addr>().ok(), req.ip.parse().ok(), "the key's IP");
    if let Some(e) = state_value::<ArpEntry>(&w, req.delete) {
        assert!(e.mac.parse::<midonet_model::MacAddr>().is_ok(), "the entry's MAC parses");
    }
}

fn snat(req: &pb::ClaimSnatBlockRequest) {
    let c = match agent_input::claim_snat_block(req) {
        Ok(c) => c,
        Err(e) => return named(&e, &["host_id", "device_id", "ip", "block"]),
    };
    let device = canonical_uuid(&req.device_id);
    let Some(StateKey::SnatBlock { device: d, ip, block }) = keys::parse(&c.key) else {
        panic!("a SNAT block key: {}", c.key);
    };
    assert_eq!((d, u32::from(block)), (device.as_str(), req.block));
    assert!(block < 1024, "a block of 64 ports");
    assert_eq!(ip.parse::<std::net::Ipv4Addr>().ok(), req.ip.parse().ok(), "the key's IP");
    let l: Liveness = serde_json::from_slice(&c.value).expect("liveness decodes");
    assert_eq!(l.host_id, canonical_uuid(&req.host_id));
    assert_eq!(l.session, req.session);
}

fn state_value<T: serde::de::DeserializeOwned>(w: &StateWrite, delete: bool) -> Option<T> {
    assert_eq!(w.value.is_none(), delete, "delete iff asked");
    let v = w.value.as_ref()?;
    Some(serde_json::from_slice(v).expect("state values decode"))
}

fn canonical_uuid(s: &str) -> String {
    s.parse::<uuid::Uuid>().expect("accepted, so a UUID").to_string()
}
