//! What the cluster accepts from agents, checked and turned into store
//! writes without touching the store.
//!
//! Agents are trusted to run our code, not to send well-formed messages: a
//! request comes off the network, so every field is checked here before
//! [`crate::topology_service`] writes anything. These are pure functions of
//! the decoded message (plus, for the host record, the bytes already stored)
//! so that `midonet-fuzzing`'s `grpc_agent` target can feed them arbitrary
//! messages without a store or a runtime.
//!
//! ```text
//!  RegisterHost ──register_host──> Registration { host, ttl, interfaces, datapath } ──host_record──> hosts/<id> JSON
//!  ReportInterfaces ──interfaces──> [HostInterface]  (valid ones, one per name)
//!  SetPortActive / PublishMac / PublishArp ──> StateWrite { key, value | delete }
//! ```
//!
//! Invariants (the fuzz target checks each):
//!
//! * A rejected request names the offending proto field ([`InputError`]).
//! * Every object written is one the model's own [`Validate`] accepts, under
//!   a key that [`ObjectKind::parse_key`] or [`keys::parse`] reads back.
//! * One key per interface name: a store transaction may not write a key
//!   twice, so a report that repeats a name keeps its last entry instead of
//!   failing the whole registration.

use std::net::{IpAddr, Ipv4Addr};

use midonet_model::topology::Stored;
use midonet_model::{Host, HostId, HostInterface, MacAddr, PortId, Validate};
use midonet_proto::pb;
use midonet_proto::{keys, ArpEntry, Liveness, MacEntry};

/// Session lease TTL when the agent asks for none.
pub const DEFAULT_SESSION_TTL_SECS: i64 = 10;
/// Bounds on the TTL an agent may ask for.
pub const MIN_TTL: i64 = 2;
pub const MAX_TTL: i64 = 300;

/// A request field that does not hold what it must.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct InputError {
    /// The proto field name (`host_id`, `mac`, ...).
    pub field: &'static str,
    pub message: String,
}

impl InputError {
    fn new(field: &'static str, message: String) -> Self {
        InputError { field, message }
    }
}

impl From<InputError> for tonic::Status {
    fn from(e: InputError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

fn uuid(field: &'static str, s: &str) -> Result<uuid::Uuid, InputError> {
    s.parse().map_err(|_| InputError::new(field, format!("`{s}` is not a UUID")))
}

fn host_id(s: &str) -> Result<HostId, InputError> {
    uuid("host_id", s).map(HostId::from_uuid)
}

fn port_id(s: &str) -> Result<PortId, InputError> {
    uuid("port_id", s).map(PortId::from_uuid)
}

fn mac(s: &str) -> Result<MacAddr, InputError> {
    s.parse().map_err(|_| InputError::new("mac", format!("`{s}` is not a MAC")))
}

/// Addresses as agents report them (`10.0.0.1/24` or bare); the ones that
/// do not parse are left out.
fn addresses(list: &[String]) -> Vec<IpAddr> {
    list.iter().filter_map(|a| a.split('/').next()?.parse().ok()).collect()
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain structs always serialize")
}

/// A checked `RegisterHostRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub host: HostId,
    pub name: String,
    pub addresses: Vec<IpAddr>,
    /// Granted session TTL, within [`MIN_TTL`]..=[`MAX_TTL`].
    pub ttl_secs: i64,
    pub interfaces: Vec<HostInterface>,
    /// The datapath provider the agent runs, one of
    /// [`midonet_proto::DATAPATHS`] or empty (not said).
    pub datapath: String,
}

/// Checks a registration: the host id must be a UUID, the name one the
/// model accepts for a host and the datapath empty or a known provider;
/// the TTL is clamped, unusable addresses and interfaces are left out.
pub fn register_host(req: &pb::RegisterHostRequest) -> Result<Registration, InputError> {
    let host = host_id(&req.host_id)?;
    let probe = Host { id: host, name: req.name.clone(), ..Host::default() };
    if let Err(e) = probe.validate() {
        return Err(InputError::new("name", e.message));
    }
    if !req.datapath.is_empty() && !midonet_proto::DATAPATHS.contains(&req.datapath.as_str()) {
        let known = midonet_proto::DATAPATHS.join(", ");
        return Err(InputError::new(
            "datapath",
            format!("not a datapath provider (one of {known})"),
        ));
    }
    let ttl_secs = if req.ttl_secs <= 0 {
        DEFAULT_SESSION_TTL_SECS
    } else {
        req.ttl_secs.clamp(MIN_TTL, MAX_TTL)
    };
    Ok(Registration {
        host,
        name: req.name.clone(),
        addresses: addresses(&req.addresses),
        ttl_secs,
        interfaces: interfaces(host, &req.interfaces),
        datapath: req.datapath.clone(),
    })
}

/// The host record to store: what is `stored` (operators set weights and
/// limits there) with the id, name and addresses from the registration.
/// A stored value that is not a JSON object is replaced by a fresh host.
pub fn host_record(stored: Option<&[u8]>, reg: &Registration) -> Vec<u8> {
    let mut value: serde_json::Value = match stored.and_then(|v| serde_json::from_slice(v).ok()) {
        Some(v @ serde_json::Value::Object(_)) => v,
        _ => serde_json::to_value(Host { id: reg.host, ..Default::default() })
            .expect("host serializes"),
    };
    value["id"] = serde_json::json!(reg.host.to_string());
    value["name"] = serde_json::json!(reg.name);
    value["addresses"] = serde_json::json!(reg.addresses);
    serde_json::to_vec(&value).expect("json value serializes")
}

/// The interfaces of `host` to store: those with a name the model accepts
/// (1 to 15 characters, as Linux's) that can be a key part (no `/`), one per
/// name (the last one reported wins).
pub fn interfaces(host: HostId, ifaces: &[pb::Interface]) -> Vec<HostInterface> {
    let mut out: Vec<HostInterface> = Vec::with_capacity(ifaces.len());
    for i in ifaces {
        if i.name.contains('/') {
            continue;
        }
        let hi = HostInterface {
            host_id: host,
            name: i.name.clone(),
            mac: i.mac.parse::<MacAddr>().ok(),
            mtu: i.mtu,
            status: u32::from(i.up) | (u32::from(i.has_link) << 1),
            if_type: if i.r#type.is_empty() { "Unknown".into() } else { i.r#type.clone() },
            endpoint: i.endpoint.clone(),
            addresses: addresses(&i.addresses),
        };
        if hi.validate().is_err() {
            continue;
        }
        match out.iter_mut().find(|o| o.name == hi.name) {
            Some(o) => *o = hi,
            None => out.push(hi),
        }
    }
    out
}

/// A checked `ReportInterfacesRequest`: the host and its interfaces.
pub fn report_interfaces(
    req: &pb::ReportInterfacesRequest,
) -> Result<(HostId, Vec<HostInterface>), InputError> {
    let host = host_id(&req.host_id)?;
    Ok((host, interfaces(host, &req.interfaces)))
}

/// The store key and JSON value of a host interface.
pub fn interface_kv(hi: &HostInterface) -> (String, Vec<u8>) {
    (hi.store_key(), json(hi))
}

/// One leased state key to write, or to delete when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// `state/ports/<id>/active`, written with the session or deleted.
pub fn set_port_active(req: &pb::SetPortActiveRequest) -> Result<StateWrite, InputError> {
    let port = port_id(&req.port_id)?;
    let key = keys::port_active(&port.to_string());
    let value = req.active.then(|| json(&Liveness::of(req.host_id.clone(), req.session)));
    Ok(StateWrite { key, value })
}

/// A checked SNAT block claim: the key and, for a claim, the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatClaim {
    pub key: String,
    pub host: HostId,
    pub release: bool,
    /// The value a claim writes (the holder and its session).
    pub value: Vec<u8>,
}

/// Blocks per NAT IP (65536 ports / 64).
pub const SNAT_BLOCKS: u32 = 1024;

/// `state/snat/<device>/<ip>/<block>`, claimed for the host or released.
pub fn claim_snat_block(req: &pb::ClaimSnatBlockRequest) -> Result<SnatClaim, InputError> {
    let host = host_id(&req.host_id)?;
    let device = uuid("device_id", &req.device_id)?;
    let ip: Ipv4Addr = req
        .ip
        .parse()
        .map_err(|_| InputError::new("ip", format!("`{}` is not an IPv4 address", req.ip)))?;
    let block =
        u16::try_from(req.block).ok().filter(|b| u32::from(*b) < SNAT_BLOCKS).ok_or_else(|| {
            InputError::new("block", format!("{} out of range 0..{SNAT_BLOCKS}", req.block))
        })?;
    let key = keys::snat_block(&device.to_string(), &ip.to_string(), block);
    let value = json(&Liveness::of(host.to_string(), req.session));
    Ok(SnatClaim { key, host, release: req.release, value })
}

/// `state/tables/mac/<bridge>/<vlan>/<mac>` → the port, or deleted.
pub fn publish_mac(req: &pb::PublishMacRequest) -> Result<StateWrite, InputError> {
    let bridge = uuid("bridge_id", &req.bridge_id)?;
    let mac = mac(&req.mac)?;
    let vlan = u16::try_from(req.vlan)
        .ok()
        .filter(|v| *v < 4096)
        .ok_or_else(|| InputError::new("vlan", format!("{} out of range 0..=4095", req.vlan)))?;
    let key = keys::mac_entry(&bridge.to_string(), vlan, &mac.to_string());
    let value = if req.delete {
        None
    } else {
        let port = port_id(&req.port_id)?;
        Some(json(&MacEntry { port_id: port.to_string(), host_id: String::new() }))
    };
    Ok(StateWrite { key, value })
}

/// `state/tables/arp/<device>/<ip>` → the MAC, or deleted.
pub fn publish_arp(req: &pb::PublishArpRequest) -> Result<StateWrite, InputError> {
    let device = uuid("device_id", &req.device_id)?;
    let ip: Ipv4Addr =
        req.ip.parse().map_err(|_| InputError::new("ip", format!("`{}` is not IPv4", req.ip)))?;
    let key = keys::arp_entry(&device.to_string(), &ip.to_string());
    let value = if req.delete {
        None
    } else {
        let mac = mac(&req.mac)?;
        Some(json(&ArpEntry { mac: mac.to_string(), host_id: String::new() }))
    };
    Ok(StateWrite { key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "6f1c1d2e-0000-4000-8000-000000000001";

    fn iface(name: &str, mtu: u32) -> pb::Interface {
        pb::Interface { name: name.into(), mtu, ..Default::default() }
    }

    #[test]
    fn repeated_interface_names_keep_the_last_and_bad_names_are_left_out() {
        let req = pb::RegisterHostRequest {
            host_id: H.into(),
            name: "h1".into(),
            interfaces: vec![
                iface("eth0", 1500),
                iface("", 1),
                iface("a/b", 1),
                iface("much-too-long-name", 1),
                iface("eth0", 9000),
            ],
            ..Default::default()
        };
        let reg = register_host(&req).expect("valid");
        assert_eq!(reg.interfaces.len(), 1, "{:?}", reg.interfaces);
        assert_eq!((reg.interfaces[0].name.as_str(), reg.interfaces[0].mtu), ("eth0", 9000));
        assert_eq!(reg.ttl_secs, DEFAULT_SESSION_TTL_SECS);
    }

    #[test]
    fn errors_name_the_field() {
        let bad_host = pb::RegisterHostRequest { host_id: "x".into(), ..Default::default() };
        assert_eq!(register_host(&bad_host).expect_err("bad").field, "host_id");
        let long = pb::RegisterHostRequest {
            host_id: H.into(),
            name: "n".repeat(300),
            ..Default::default()
        };
        assert_eq!(register_host(&long).expect_err("too long").field, "name");
        let datapath = |d: &str| pb::RegisterHostRequest {
            host_id: H.into(),
            datapath: d.into(),
            ..Default::default()
        };
        assert_eq!(register_host(&datapath("ovs")).expect_err("unknown").field, "datapath");
        for d in ["", "ebpf", "userspace", "dummy"] {
            assert_eq!(register_host(&datapath(d)).expect(d).datapath, d);
        }
        let vlan = pb::PublishMacRequest {
            bridge_id: H.into(),
            mac: "02:00:00:00:00:01".into(),
            vlan: 4096,
            ..Default::default()
        };
        assert_eq!(publish_mac(&vlan).expect_err("vlan").field, "vlan");
        let no_port = pb::PublishMacRequest { vlan: 1, ..vlan };
        assert_eq!(publish_mac(&no_port).expect_err("port").field, "port_id");
        let arp =
            pb::PublishArpRequest { device_id: H.into(), ip: "::1".into(), ..Default::default() };
        assert_eq!(publish_arp(&arp).expect_err("ip").field, "ip");
        let status: tonic::Status = publish_arp(&arp).expect_err("ip").into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("ip "), "{}", status.message());
    }

    #[test]
    fn host_record_keeps_operator_fields() {
        let reg = register_host(&pb::RegisterHostRequest {
            host_id: H.into(),
            name: "h1".into(),
            addresses: vec!["10.0.0.1/24".into(), "junk".into()],
            ..Default::default()
        })
        .expect("valid");
        let stored = br#"{"id":"x","name":"old","floodingProxyWeight":7}"#;
        let h: Host = serde_json::from_slice(&host_record(Some(stored), &reg)).expect("host");
        assert_eq!((h.name.as_str(), h.flooding_proxy_weight), ("h1", 7));
        assert_eq!(h.addresses, vec![IpAddr::from([10, 0, 0, 1])]);
        let fresh: Host = serde_json::from_slice(&host_record(Some(b"[1]"), &reg)).expect("host");
        assert_eq!((fresh.id, fresh.flooding_proxy_weight), (reg.host, 1));
    }

    #[test]
    fn state_writes_use_the_state_key_layout() {
        let w = set_port_active(&pb::SetPortActiveRequest {
            session: 5,
            host_id: H.into(),
            port_id: H.into(),
            active: false,
        })
        .expect("valid");
        assert_eq!(keys::parse(&w.key), Some(keys::StateKey::PortActive { port: H }));
        assert_eq!(w.value, None);
        let w = publish_arp(&pb::PublishArpRequest {
            session: 5,
            device_id: H.into(),
            ip: "10.0.0.9".into(),
            mac: "02:00:00:00:00:09".into(),
            delete: false,
        })
        .expect("valid");
        let e: ArpEntry = serde_json::from_slice(&w.value.expect("put")).expect("json");
        assert_eq!(e.mac, "02:00:00:00:00:09");
    }
}

/// A checked `ClaimHealthCheck`: the load balancer's checker key, the
/// holder's value, and whether it gives the checks back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerClaim {
    pub lb: midonet_model::LoadBalancerId,
    pub key: String,
    pub host: HostId,
    pub release: bool,
    pub value: Vec<u8>,
}

/// `state/lb/<lb>/checker` → the claiming host's [`Liveness`].
pub fn claim_health_check(req: &pb::ClaimHealthCheckRequest) -> Result<CheckerClaim, InputError> {
    let host = host_id(&req.host_id)?;
    let lb = uuid("load_balancer_id", &req.load_balancer_id)?;
    let key = keys::lb_checker(&lb.to_string());
    let value = json(&Liveness::of(host.to_string(), req.session));
    Ok(CheckerClaim { lb: lb.into(), key, host, release: req.release, value })
}

/// A checked `ReportMemberStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub lb: midonet_model::LoadBalancerId,
    pub member: midonet_model::PoolMemberId,
    pub host: HostId,
    /// `UP` or `DOWN`.
    pub status: &'static str,
}

pub fn report_member_status(
    req: &pb::ReportMemberStatusRequest,
) -> Result<MemberStatus, InputError> {
    let host = host_id(&req.host_id)?;
    let lb = uuid("load_balancer_id", &req.load_balancer_id)?;
    let member = uuid("member_id", &req.member_id)?;
    let status = match req.status.as_str() {
        "UP" => "UP",
        "DOWN" => "DOWN",
        o => {
            let shown: String = o.chars().take(16).collect();
            return Err(InputError::new("status", format!("`{shown}` is not UP or DOWN")));
        }
    };
    Ok(MemberStatus { lb: lb.into(), member: member.into(), host, status })
}
