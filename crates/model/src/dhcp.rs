//! DHCP configuration of bridges: subnets and static hosts (MidoNet has no
//! dynamic pool; every VM port gets a host entry).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::id::*;
use crate::lenient;
use crate::mac::MacAddr;

/// A classless static route served in DHCP option 121.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DhcpOpt121Route {
    pub destination_prefix: Ipv4Addr,
    #[serde(deserialize_with = "lenient::num")]
    pub destination_length: u8,
    pub gateway_addr: Ipv4Addr,
}

/// A DHCP subnet of a bridge (REST `DhcpSubnet-v2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DhcpSubnet {
    #[serde(default)]
    pub bridge_id: BridgeId,
    pub subnet_prefix: Ipv4Addr,
    #[serde(deserialize_with = "lenient::num")]
    pub subnet_length: u8,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub default_gateway: Option<Ipv4Addr>,
    /// The address the DHCP server answers from (the Neutron DHCP port's).
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub server_addr: Option<Ipv4Addr>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub dns_server_addrs: Vec<Ipv4Addr>,
    #[serde(rename = "interfaceMTU", default, deserialize_with = "lenient::opt_num")]
    pub interface_mtu: Option<u16>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub opt121_routes: Vec<DhcpOpt121Route>,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub enabled: bool,
}

impl DhcpSubnet {
    /// The id of a subnet within its bridge, as used in URIs: `10.0.0.0_24`.
    pub fn key(&self) -> String {
        format!("{}_{}", self.subnet_prefix, self.subnet_length)
    }
}

/// An extra DHCP option, by name or code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DhcpExtraOpt {
    pub opt_name: String,
    pub opt_value: String,
}

/// A static DHCP host entry (REST `DhcpHost-v2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DhcpHost {
    #[serde(default)]
    pub bridge_id: BridgeId,
    /// The subnet key (`10.0.0.0_24`) this host belongs to; set from the URI.
    #[serde(default)]
    pub subnet: String,
    pub mac_addr: MacAddr,
    pub ip_addr: Ipv4Addr,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub extra_dhcp_opts: Vec<DhcpExtraOpt>,
}
