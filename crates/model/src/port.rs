//! Ports: where devices meet each other (interior, linked to a peer) or the
//! outside world (exterior, bound to an interface on a host).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::id::*;
use crate::lenient;
use crate::mac::MacAddr;

crate::string_enum! {
    /// Which kind of device the port belongs to.
    #[derive(Default)]
    pub enum PortType {
        #[default]
        Bridge => "Bridge" | "ExteriorBridge" | "InteriorBridge",
        Router => "Router" | "ExteriorRouter" | "InteriorRouter",
    }
}

/// A virtual port. One flat struct, as in MidoNet's REST `Port-v3`; the
/// router-only fields (`portAddress`, `networkAddress`, `networkLength`,
/// `portMac`) are set only on router ports and `vlanId` only on bridge
/// ports — [`crate::Validate`] enforces it.
///
/// A port is *exterior* when `hostId` and `interfaceName` are set, *interior*
/// when `peerId` is set, and *unplugged* otherwise; never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    #[serde(default)]
    pub id: PortId,
    #[serde(rename = "type", default)]
    pub port_type: PortType,
    /// The bridge or router this port belongs to (set by the parent URI).
    #[serde(default)]
    pub device_id: DeviceId,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub admin_state_up: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub inbound_filter_id: Option<ChainId>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub outbound_filter_id: Option<ChainId>,
    /// Allocated by the cluster, unique among ports, never reused while the
    /// port exists; carried as the VXLAN VNI to the egress host.
    #[serde(default, deserialize_with = "lenient::num")]
    pub tunnel_key: u32,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub host_id: Option<HostId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub peer_id: Option<PortId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vif_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub port_group_ids: Vec<PortGroupId>,
    /// Mirrors applied before the inbound filter.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub inbound_mirror_ids: Vec<MirrorId>,
    /// Mirrors applied after the outbound filter.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub outbound_mirror_ids: Vec<MirrorId>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub post_in_filter_mirror_ids: Vec<MirrorId>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub pre_out_filter_mirror_ids: Vec<MirrorId>,
    /// Bridge ports only: the VLAN an interior port is tagged with.
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub vlan_id: Option<u16>,
    /// Router ports only.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub port_address: Option<Ipv4Addr>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub network_address: Option<Ipv4Addr>,
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub network_length: Option<u8>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub port_mac: Option<MacAddr>,
}

/// The L3 identity of a router port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouterPortAddr {
    pub address: Ipv4Addr,
    pub network: Ipv4Addr,
    pub length: u8,
    pub mac: MacAddr,
}

impl RouterPortAddr {
    /// Whether `ip` is inside the port's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        prefix_contains(self.network, self.length, ip)
    }
    /// The subnet's directed broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        let mask = prefix_mask(self.length);
        Ipv4Addr::from(u32::from(self.network) | !mask)
    }
}

/// The netmask of a /len IPv4 prefix as a u32 (len ≤ 32).
pub fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// Whether `ip` is in `net/len`.
pub fn prefix_contains(net: Ipv4Addr, len: u8, ip: Ipv4Addr) -> bool {
    let m = prefix_mask(len);
    (u32::from(net) & m) == (u32::from(ip) & m)
}

impl Port {
    pub fn is_router_port(&self) -> bool {
        self.port_type == PortType::Router
    }
    pub fn is_bridge_port(&self) -> bool {
        self.port_type == PortType::Bridge
    }
    pub fn is_exterior(&self) -> bool {
        self.host_id.is_some() && self.interface_name.is_some()
    }
    pub fn is_interior(&self) -> bool {
        self.peer_id.is_some()
    }
    pub fn bridge_id(&self) -> Option<BridgeId> {
        self.is_bridge_port().then(|| self.device_id.cast())
    }
    pub fn router_id(&self) -> Option<RouterId> {
        self.is_router_port().then(|| self.device_id.cast())
    }
    /// The router port's address, network and MAC, when all are set.
    pub fn router_addr(&self) -> Option<RouterPortAddr> {
        Some(RouterPortAddr {
            address: self.port_address?,
            network: self.network_address?,
            length: self.network_length?,
            mac: self.port_mac?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_port_from_midonet_cli_body() {
        // Exactly what midonet-cli sends: networkLength as a string.
        let p: Port = serde_json::from_str(
            r#"{"type":"Router","portAddress":"10.0.0.1","networkAddress":"10.0.0.0","networkLength":"24","portMac":"02:00:00:aa:bb:cc"}"#,
        )
        .expect("parse");
        assert!(p.is_router_port());
        assert!(p.admin_state_up);
        let a = p.router_addr().expect("complete");
        assert!(a.contains("10.0.0.77".parse().expect("ip")));
        assert!(!a.contains("10.0.1.1".parse().expect("ip")));
        assert_eq!(a.broadcast(), "10.0.0.255".parse::<Ipv4Addr>().expect("ip"));
    }

    #[test]
    fn legacy_port_types_are_accepted() {
        let p: Port = serde_json::from_str(r#"{"type":"InteriorBridge"}"#).expect("parse");
        assert_eq!(p.port_type, PortType::Bridge);
        assert_eq!(serde_json::to_value(&p).expect("ser")["type"], "Bridge");
    }

    #[test]
    fn prefix_math() {
        assert_eq!(prefix_mask(0), 0);
        assert_eq!(prefix_mask(32), u32::MAX);
        assert_eq!(prefix_mask(24), 0xffff_ff00);
        assert!(prefix_contains("0.0.0.0".parse().expect("ip"), 0, "8.8.8.8".parse().expect("ip")));
    }
}
