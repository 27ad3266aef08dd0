//! Hosts and their interfaces, tunnel zones, port groups, IP address groups,
//! and the seeded L2/L3 tables of bridges.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::id::*;
use crate::lenient;
use crate::mac::MacAddr;

/// A hypervisor or gateway running an agent. Registered by the agent (never
/// created by MidoNet's clients); `alive` and `datapath` are runtime state
/// that the cluster fills from the agent's lease and are not stored with
/// the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    #[serde(default)]
    pub id: HostId,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub addresses: Vec<IpAddr>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub alive: bool,
    /// Not in MidoNet's DTO: the datapath provider the live agent
    /// registered with (`ebpf`, `userspace`, `dummy`); empty when the host
    /// is not alive or its agent did not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datapath: String,
    #[serde(default = "one", deserialize_with = "lenient::num")]
    pub flooding_proxy_weight: u32,
    #[serde(default = "one", deserialize_with = "lenient::num")]
    pub container_weight: u32,
    /// -1 means no limit.
    #[serde(default = "no_limit", deserialize_with = "lenient::num")]
    pub container_limit: i32,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub enforce_container_limit: bool,
}

fn one() -> u32 {
    1
}
fn no_limit() -> i32 {
    -1
}

impl Default for Host {
    fn default() -> Self {
        Host {
            id: HostId::nil(),
            name: String::new(),
            addresses: Vec::new(),
            alive: false,
            datapath: String::new(),
            flooding_proxy_weight: 1,
            container_weight: 1,
            container_limit: -1,
            enforce_container_limit: false,
        }
    }
}

/// A network interface on a host, as its agent's scanner reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostInterface {
    #[serde(default)]
    pub host_id: HostId,
    pub name: String,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub mac: Option<MacAddr>,
    #[serde(default, deserialize_with = "lenient::num")]
    pub mtu: u32,
    /// Bit 0: administratively up; bit 1: carrier (MidoNet's encoding).
    #[serde(default, deserialize_with = "lenient::num")]
    pub status: u32,
    /// `Physical`, `Virtual`, `Tunnel`, `Unknown`.
    #[serde(rename = "type", default)]
    pub if_type: String,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub addresses: Vec<IpAddr>,
}

/// A host–interface–port binding (REST `HostInterfacePort-v1`). Stored as
/// `hostId` + `interfaceName` on the port itself; this is the view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostInterfacePort {
    #[serde(default)]
    pub host_id: HostId,
    #[serde(default)]
    pub port_id: PortId,
    #[serde(default)]
    pub interface_name: String,
}

crate::string_enum! {
    #[derive(Default)]
    pub enum TunnelZoneType {
        #[default]
        Vxlan => "vxlan",
        Gre => "gre",
        Vtep => "vtep",
    }
}

/// A set of hosts that can tunnel to each other, each with its underlay IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TunnelZone {
    #[serde(default)]
    pub id: TunnelZoneId,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub zone_type: TunnelZoneType,
}

/// Membership of a host in a tunnel zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TunnelZoneHost {
    #[serde(default)]
    pub tunnel_zone_id: TunnelZoneId,
    #[serde(default)]
    pub host_id: HostId,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub ip_address: Option<Ipv4Addr>,
}

/// A named set of ports, for rule conditions and (when `stateful`) for
/// pushing flow state to every member's host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PortGroup {
    #[serde(default)]
    pub id: PortGroupId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub stateful: bool,
}

/// A named set of IP addresses (the backing object of a security group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IpAddrGroup {
    #[serde(default)]
    pub id: IpAddrGroupId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub name: String,
}

/// One address of an IP address group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddrGroupAddr {
    #[serde(default)]
    pub ip_addr_group_id: IpAddrGroupId,
    pub addr: IpAddr,
    /// 4 or 6; derived from `addr`.
    #[serde(default, deserialize_with = "lenient::num")]
    pub version: u8,
}

/// A seeded MAC→port entry of a bridge (per VLAN; VLAN 0 = untagged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MacTableEntry {
    #[serde(default)]
    pub bridge_id: BridgeId,
    pub mac_addr: MacAddr,
    pub port_id: PortId,
    #[serde(default, deserialize_with = "lenient::num")]
    pub vlan_id: u16,
}

/// A seeded IP→MAC entry of a bridge; the bridge answers ARP for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArpTableEntry {
    #[serde(default)]
    pub bridge_id: BridgeId,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}
