//! midonet-proto: the agent ↔ cluster protocol (ARCHITECTURE.md §2, §5).
//!
//! A gRPC service, `midonet.topology.v1.Topology` (`proto/topology.proto`),
//! generated with tonic/prost at build time from Debian's `protoc`:
//!
//! ```text
//!  agent                                   cluster (any replica)
//!  RegisterHost(id, name, addrs, ifaces) ─> lease L; hosts/<id>; state/hosts/<id>/alive @L
//!  KeepAlive(L) every ttl/3 ─────────────> keep_alive(L)       (NOT_FOUND → register again)
//!  Subscribe(from_revision) ─────────────> range(/midonet/v1/) @R  or  watch(from_revision)
//!        <── Snapshot{R, kvs} ──────────── (only when from_revision = 0 or compacted)
//!        <── ResyncNeeded{compact} ─────── (from_revision compacted; a Snapshot follows)
//!        <── Delta{rev, changes} ... ───── ordered, one per store revision, no gaps
//!  SetPortActive(p, up) ─────────────────> state/ports/<p>/active @L
//!  PublishMac / PublishArp ──────────────> state/tables/... @L   (streamed back to everyone)
//! ```
//!
//! Invariants the two sides rely on:
//!
//! * The stream covers every key under [`KEY_ROOT`]: topology objects (model
//!   JSON, decoded with `Topology::apply`) **and** the runtime state under
//!   [`STATE_ROOT`] (liveness, port activity, MAC/ARP tables). The agent splits
//!   them with [`is_state_key`].
//! * A `Snapshot` is complete at its revision and replaces what the agent
//!   held; each `Delta` is one store revision, in increasing order, with no
//!   gap after the snapshot (or after the `from_revision` the agent asked
//!   for). An agent that reconnects asks for its last applied revision + 1
//!   and receives only deltas unless that revision was compacted.
//! * Every state key written for an agent is attached to that agent's
//!   session lease, so it vanishes when the agent stops keeping it alive.
//!
//! This crate also owns the state key layout ([`keys`]) and the small JSON
//! values stored there ([`MacEntry`], [`ArpEntry`]), because both sides need
//! them and nothing else does.
#![allow(clippy::derive_partial_eq_without_eq)]

/// Generated prost messages and tonic client/server.
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod pb {
    tonic::include_proto!("midonet.topology.v1");
}

pub mod credential;
pub mod tls;

pub use pb::topology_client::TopologyClient;
pub use pb::topology_server::{Topology as TopologyService, TopologyServer};

/// The largest gRPC message either side accepts or sends, set explicitly on
/// both (tonic's default decoding limit is 4 MiB). Snapshots are chunked far
/// below it, so the topology's size never meets it.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Root of every key of this version (same as the model's).
pub const KEY_ROOT: &str = "/midonet/v1/";
/// Root of runtime state keys (leased, written for agents).
pub const STATE_ROOT: &str = "/midonet/v1/state/";

/// Whether a store key is runtime state rather than a topology object.
pub fn is_state_key(key: &str) -> bool {
    key.starts_with(STATE_ROOT)
}

/// The state key layout. Ids are rendered as the canonical strings the
/// model uses (UUIDs in hyphenated lowercase, MACs `aa:bb:..`).
pub mod keys {
    use super::STATE_ROOT;

    /// `state/hosts/<id>/alive`: present while the host's agent session lives.
    pub fn host_alive(host: &str) -> String {
        format!("{STATE_ROOT}hosts/{host}/alive")
    }
    /// `state/ports/<id>/active`: present while the port is bound and up on its host.
    pub fn port_active(port: &str) -> String {
        format!("{STATE_ROOT}ports/{port}/active")
    }
    /// Prefix of the learned MAC table of one bridge.
    pub fn mac_table_prefix(bridge: &str) -> String {
        format!("{STATE_ROOT}tables/mac/{bridge}/")
    }
    /// `state/tables/mac/<bridge>/<vlan>/<mac>` → [`super::MacEntry`].
    pub fn mac_entry(bridge: &str, vlan: u16, mac: &str) -> String {
        format!("{STATE_ROOT}tables/mac/{bridge}/{vlan}/{}", mac.to_ascii_lowercase())
    }
    /// `state/tables/arp/<device>/<ip>` → [`super::ArpEntry`].
    pub fn arp_entry(device: &str, ip: &str) -> String {
        format!("{STATE_ROOT}tables/arp/{device}/{ip}")
    }

    /// `state/snat/<device>/<ip>/<block>` → [`super::Liveness`] of the
    /// holding host: a claimed SNAT port block.
    pub fn snat_block(device: &str, ip: &str, block: u16) -> String {
        format!("{STATE_ROOT}snat/{device}/{ip}/{block}")
    }

    /// `state/lb/<load balancer>/checker` → [`super::Liveness`] of the
    /// host running the load balancer's health checks.
    pub fn lb_checker(lb: &str) -> String {
        format!("{STATE_ROOT}lb/{lb}/checker")
    }

    /// A decoded state key.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum StateKey<'a> {
        HostAlive { host: &'a str },
        PortActive { port: &'a str },
        Mac { bridge: &'a str, vlan: u16, mac: &'a str },
        Arp { device: &'a str, ip: &'a str },
        SnatBlock { device: &'a str, ip: &'a str, block: u16 },
        LbChecker { lb: &'a str },
    }

    /// Parses a state key; `None` for keys outside the layout above.
    pub fn parse(key: &str) -> Option<StateKey<'_>> {
        let rest = key.strip_prefix(STATE_ROOT)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["hosts", host, "alive"] => Some(StateKey::HostAlive { host }),
            ["ports", port, "active"] => Some(StateKey::PortActive { port }),
            ["tables", "mac", bridge, vlan, mac] => {
                Some(StateKey::Mac { bridge, vlan: vlan.parse().ok()?, mac })
            }
            ["tables", "arp", device, ip] => Some(StateKey::Arp { device, ip }),
            ["snat", device, ip, block] => {
                Some(StateKey::SnatBlock { device, ip, block: block.parse().ok()? })
            }
            ["lb", lb, "checker"] => Some(StateKey::LbChecker { lb }),
            _ => None,
        }
    }
}

/// Value of a MAC table key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MacEntry {
    pub port_id: String,
    /// Host that published it (the owner of the lease).
    #[serde(default)]
    pub host_id: String,
}

/// Value of an ARP table key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArpEntry {
    pub mac: String,
    #[serde(default)]
    pub host_id: String,
}

/// Value of `state/hosts/<id>/alive` and `state/ports/<id>/active`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Liveness {
    pub host_id: String,
    /// The session (lease) that owns the key.
    pub session: i64,
    /// `alive` only: the datapath provider the host's agent registered
    /// with (one of [`DATAPATHS`]); empty when it did not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datapath: String,
}

impl Liveness {
    /// A key held by `host_id`'s session `session`.
    pub fn of(host_id: impl Into<String>, session: i64) -> Liveness {
        Liveness { host_id: host_id.into(), session, datapath: String::new() }
    }
}

/// The datapath providers an agent may register with
/// (`RegisterHostRequest.datapath`).
pub const DATAPATHS: [&str; 3] = ["ebpf", "userspace", "dummy"];

#[cfg(test)]
mod tests {
    use super::keys::*;
    use super::*;
    use prost::Message;

    #[test]
    fn state_keys_round_trip() {
        let h = "6f1c1d2e-0000-4000-8000-000000000001";
        assert_eq!(parse(&host_alive(h)), Some(StateKey::HostAlive { host: h }));
        assert_eq!(parse(&port_active(h)), Some(StateKey::PortActive { port: h }));
        let k = mac_entry(h, 7, "02:AA:00:00:00:01");
        assert!(k.starts_with(&mac_table_prefix(h)));
        assert_eq!(parse(&k), Some(StateKey::Mac { bridge: h, vlan: 7, mac: "02:aa:00:00:00:01" }));
        assert_eq!(
            parse(&arp_entry(h, "10.0.0.1")),
            Some(StateKey::Arp { device: h, ip: "10.0.0.1" })
        );
        assert!(is_state_key(&host_alive(h)));
        assert!(!is_state_key("/midonet/v1/bridges/x"));
        assert_eq!(parse("/midonet/v1/state/tables/mac/b/notanumber/m"), None);
        assert_eq!(parse("/midonet/v1/state/other"), None);
    }

    #[test]
    fn subscribe_messages_round_trip_through_bytes() {
        let msg = pb::SubscribeResponse {
            event: Some(pb::subscribe_response::Event::Delta(pb::Delta {
                revision: 42,
                changes: vec![
                    pb::Change {
                        key: "/midonet/v1/bridges/x".into(),
                        value: b"{}".to_vec(),
                        deleted: false,
                    },
                    pb::Change { key: "/midonet/v1/ports/y".into(), value: vec![], deleted: true },
                ],
            })),
        };
        let bytes = msg.encode_to_vec();
        let back = pb::SubscribeResponse::decode(bytes.as_slice()).expect("decode");
        assert_eq!(back, msg);
    }

    #[test]
    fn state_values_are_camel_case_json() {
        let m = MacEntry { port_id: "p".into(), host_id: "h".into() };
        let s = serde_json::to_string(&m).expect("json");
        assert_eq!(s, r#"{"portId":"p","hostId":"h"}"#);
        let a: ArpEntry = serde_json::from_str(r#"{"mac":"02:00:00:00:00:01"}"#).expect("json");
        assert_eq!(a.host_id, "");
    }
}
