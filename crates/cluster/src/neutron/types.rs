//! The Neutron resources as stored and answered (Neutron v2.0 attribute
//! names, `:` included). Fields whose name starts with `_` are this
//! server's bookkeeping: stored, never answered ([`super::render`] strips
//! them).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `created_at`/`updated_at`/`revision_number`/`description`/`tags`: the
/// `standard-attr-*` extensions, shared by every resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Standard {
    pub description: String,
    pub tags: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub revision_number: u64,
}

impl Standard {
    pub fn new(description: String) -> Self {
        let now = timestamp(SystemTime::now());
        Standard {
            description,
            tags: Vec::new(),
            created_at: now.clone(),
            updated_at: now,
            revision_number: 0,
        }
    }
    /// A change: new `updated_at`, next revision.
    pub fn touch(&mut self) {
        self.updated_at = timestamp(SystemTime::now());
        self.revision_number += 1;
    }
}

/// `2026-12-02T07:40:00Z`, as Neutron writes times.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub tenant_id: String,
    pub project_id: String,
    pub admin_state_up: bool,
    pub status: String,
    pub shared: bool,
    /// Ids of its subnets, in creation order.
    pub subnets: Vec<String>,
    #[serde(rename = "router:external")]
    pub router_external: bool,
    pub mtu: u32,
    pub port_security_enabled: bool,
    #[serde(flatten)]
    pub std: Standard,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    pub destination: String,
    pub nexthop: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub tenant_id: String,
    pub project_id: String,
    pub cidr: String,
    pub ip_version: u8,
    pub gateway_ip: Option<String>,
    pub allocation_pools: Vec<Pool>,
    pub enable_dhcp: bool,
    pub dns_nameservers: Vec<String>,
    pub host_routes: Vec<HostRoute>,
    pub ipv6_ra_mode: Option<String>,
    pub ipv6_address_mode: Option<String>,
    pub subnetpool_id: Option<String>,
    #[serde(flatten)]
    pub std: Standard,
}

/// A subnet pool (the `subnet_allocation` extension): prefixes that
/// subnets take their CIDRs from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetPool {
    pub id: String,
    pub name: String,
    pub tenant_id: String,
    pub project_id: String,
    /// Compacted (`ipam::compact`), one IP version.
    pub prefixes: Vec<String>,
    pub ip_version: u8,
    pub default_prefixlen: u8,
    pub min_prefixlen: u8,
    pub max_prefixlen: u8,
    /// Per-project limit in addresses (units of /32 for IPv4, /64 for
    /// IPv6), as Neutron counts it; `None` or 0: no limit.
    pub default_quota: Option<i64>,
    pub shared: bool,
    pub is_default: bool,
    /// Always `None`: there is no address-scope extension.
    pub address_scope_id: Option<String>,
    #[serde(flatten)]
    pub std: Standard,
    /// The CIDRs its subnets hold. Kept in the pool (not found by a scan of
    /// the subnets) so that every allocation and release rewrites the pool:
    /// two concurrent allocations, or an allocation and the pool's delete,
    /// then conflict on commit and one retries seeing the other.
    #[serde(default, rename = "_allocations")]
    pub allocations: Vec<Allocation>,
}

/// One subnet's CIDR in its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub subnet_id: String,
    pub cidr: String,
    pub project_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    pub ip_address: String,
    pub mac_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpOpt {
    pub opt_name: String,
    pub opt_value: String,
    pub ip_version: u8,
}

/// `device_owner` values this server gives meaning to.
pub mod owner {
    pub const ROUTER_INTERFACE: &str = "network:router_interface";
    pub const ROUTER_GATEWAY: &str = "network:router_gateway";
    pub const FLOATING_IP: &str = "network:floatingip";
    pub const DHCP: &str = "network:dhcp";

    /// Ports Neutron calls trusted: the network's own, which get no
    /// security chains.
    pub fn is_trusted(owner: &str) -> bool {
        owner.starts_with("network:")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub tenant_id: String,
    pub project_id: String,
    pub mac_address: String,
    pub fixed_ips: Vec<FixedIp>,
    pub device_id: String,
    pub device_owner: String,
    pub admin_state_up: bool,
    /// `DOWN` as stored; answered `ACTIVE` while an agent has it bound.
    pub status: String,
    pub security_groups: Vec<String>,
    pub allowed_address_pairs: Vec<AddressPair>,
    pub extra_dhcp_opts: Vec<DhcpOpt>,
    #[serde(rename = "binding:host_id")]
    pub binding_host_id: String,
    #[serde(rename = "binding:profile")]
    pub binding_profile: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "binding:vnic_type")]
    pub binding_vnic_type: String,
    #[serde(rename = "binding:vif_type")]
    pub binding_vif_type: String,
    #[serde(rename = "binding:vif_details")]
    pub binding_vif_details: serde_json::Map<String, serde_json::Value>,
    pub port_security_enabled: bool,
    #[serde(flatten)]
    pub std: Standard,
}

impl Port {
    /// The host interface the VM is plugged into: `binding:profile`'s
    /// `interface_name`, else Nova's `tap` + the first 11 characters of the
    /// port id.
    pub fn interface_name(&self) -> String {
        match self.binding_profile.get("interface_name").and_then(|v| v.as_str()) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("tap{}", &self.id[..self.id.len().min(11)]),
        }
    }
    pub fn is_trusted(&self) -> bool {
        owner::is_trusted(&self.device_owner)
    }
}

/// The part of a port that address and MAC allocation read, as the
/// network's index keeps it (`store::network_ports`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortAddrs {
    pub id: String,
    pub network_id: String,
    pub mac_address: String,
    pub fixed_ips: Vec<FixedIp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    pub network_id: String,
    pub enable_snat: bool,
    pub external_fixed_ips: Vec<FixedIp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Router {
    pub id: String,
    pub name: String,
    pub tenant_id: String,
    pub project_id: String,
    pub admin_state_up: bool,
    pub status: String,
    pub external_gateway_info: Option<GatewayInfo>,
    pub routes: Vec<HostRoute>,
    #[serde(flatten)]
    pub std: Standard,
    /// The Neutron port of the gateway (device_owner router_gateway).
    #[serde(default, rename = "_gw_port_id")]
    pub gw_port_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    pub floating_ip_address: String,
    pub floating_network_id: String,
    pub router_id: Option<String>,
    pub port_id: Option<String>,
    pub fixed_ip_address: Option<String>,
    pub status: String,
    pub tenant_id: String,
    pub project_id: String,
    #[serde(flatten)]
    pub std: Standard,
    /// The port holding the address on the external network
    /// (device_owner floatingip).
    #[serde(default, rename = "_fip_port_id")]
    pub fip_port_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub tenant_id: String,
    pub project_id: String,
    pub stateful: bool,
    #[serde(flatten)]
    pub std: Standard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    pub id: String,
    pub security_group_id: String,
    pub direction: String,
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<u32>,
    pub port_range_max: Option<u32>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub remote_address_group_id: Option<String>,
    pub normalized_cidr: Option<String>,
    pub tenant_id: String,
    pub project_id: String,
    #[serde(flatten)]
    pub std: Standard,
}

/// Per-project limits (`GET/PUT /v2.0/quotas/{project}`); -1 is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub network: i64,
    pub subnet: i64,
    pub port: i64,
    pub router: i64,
    pub floatingip: i64,
    pub security_group: i64,
    pub security_group_rule: i64,
}

impl Default for Quota {
    /// Neutron's defaults.
    fn default() -> Self {
        Quota {
            network: 100,
            subnet: 100,
            port: 500,
            router: 10,
            floatingip: 50,
            security_group: 10,
            security_group_rule: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_849_200);
        assert_eq!(timestamp(t), "2026-11-28T07:00:00Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn nova_interface_names_take_eleven_characters_of_the_id() {
        let p: Port = serde_json::from_value(serde_json::json!({
            "id": "3f2a1b4c-5d6e-7f80-9a1b-2c3d4e5f6a7b", "name": "", "network_id": "n",
            "tenant_id": "t", "project_id": "t", "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [], "device_id": "", "device_owner": "", "admin_state_up": true,
            "status": "DOWN", "security_groups": [], "allowed_address_pairs": [],
            "extra_dhcp_opts": [], "binding:host_id": "", "binding:profile": {},
            "binding:vnic_type": "normal", "binding:vif_type": "unbound",
            "binding:vif_details": {}, "port_security_enabled": true,
            "description": "", "tags": [], "created_at": "", "updated_at": "",
            "revision_number": 0
        }))
        .expect("port");
        assert_eq!(p.interface_name(), "tap3f2a1b4c-5d");
    }
}
