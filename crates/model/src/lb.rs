//! L4 load balancing: a load balancer per router, pools of members, VIPs,
//! and health monitors.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::id::*;
use crate::lenient;

/// The load balancer of one router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    #[serde(default)]
    pub id: LoadBalancerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub router_id: Option<RouterId>,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub admin_state_up: bool,
}

/// A pool of backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    #[serde(default)]
    pub id: PoolId,
    pub load_balancer_id: LoadBalancerId,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub health_monitor_id: Option<HealthMonitorId>,
    /// Only `TCP`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Only `ROUND_ROBIN` (weighted random, as MidoNet).
    #[serde(default = "round_robin")]
    pub lb_method: String,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub admin_state_up: bool,
    #[serde(default = "active")]
    pub status: String,
}

fn tcp() -> String {
    "TCP".into()
}
fn round_robin() -> String {
    "ROUND_ROBIN".into()
}
fn active() -> String {
    "ACTIVE".into()
}

/// A backend of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolMember {
    #[serde(default)]
    pub id: PoolMemberId,
    pub pool_id: PoolId,
    pub address: Ipv4Addr,
    #[serde(deserialize_with = "lenient::num")]
    pub protocol_port: u16,
    #[serde(default = "weight_one", deserialize_with = "lenient::num")]
    pub weight: u32,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub admin_state_up: bool,
    #[serde(default = "active")]
    pub status: String,
}

fn weight_one() -> u32 {
    1
}

/// A virtual IP: TCP traffic to `address:protocolPort` is balanced over the
/// pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vip {
    #[serde(default)]
    pub id: VipId,
    pub load_balancer_id: LoadBalancerId,
    pub pool_id: PoolId,
    pub address: Ipv4Addr,
    #[serde(deserialize_with = "lenient::num")]
    pub protocol_port: u16,
    /// `SOURCE_IP` or unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<String>,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub admin_state_up: bool,
}

/// A health monitor: how the members of the pools that name it are checked
/// (by an agent, from inside the virtual network; see [`HealthCheckPort`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthMonitor {
    #[serde(default)]
    pub id: HealthMonitorId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// `TCP` (connect), `HTTP` (a request, the answer's status checked)
    /// or `PING` (ICMP echo).
    #[serde(rename = "type", default = "tcp")]
    pub monitor_type: String,
    /// HTTP: the request's path.
    #[serde(default = "slash")]
    pub url_path: String,
    /// HTTP: the method.
    #[serde(default = "get")]
    pub http_method: String,
    /// HTTP: the statuses that count as up: `200`, `200,202`, `200-299`.
    #[serde(default = "ok200")]
    pub expected_codes: String,
    #[serde(default = "five", deserialize_with = "lenient::num")]
    pub delay: u32,
    #[serde(default = "five", deserialize_with = "lenient::num")]
    pub timeout: u32,
    #[serde(default = "three", deserialize_with = "lenient::num")]
    pub max_retries: u32,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub admin_state_up: bool,
    #[serde(default = "active")]
    pub status: String,
}

fn slash() -> String {
    "/".into()
}
fn get() -> String {
    "GET".into()
}
fn ok200() -> String {
    "200".into()
}

/// A health monitor's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorKind {
    Tcp,
    Http,
    Ping,
}

impl HealthMonitor {
    /// The kind, if the type is one we run.
    pub fn kind(&self) -> Option<MonitorKind> {
        match self.monitor_type.to_ascii_uppercase().as_str() {
            "TCP" => Some(MonitorKind::Tcp),
            "HTTP" => Some(MonitorKind::Http),
            "PING" => Some(MonitorKind::Ping),
            _ => None,
        }
    }

    /// Whether HTTP status `code` counts as up (`expectedCodes`: a list of
    /// codes and ranges, `200`, `200,202`, `200-299`).
    pub fn expects(&self, code: u16) -> bool {
        parse_codes(&self.expected_codes)
            .is_some_and(|v| v.iter().any(|(a, b)| (*a..=*b).contains(&code)))
    }
}

/// `expectedCodes` as inclusive ranges; `None` if malformed.
pub fn parse_codes(s: &str) -> Option<Vec<(u16, u16)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let c: u16 = part.parse().ok()?;
                (c, c)
            }
        };
        if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
            return None;
        }
        out.push((a, b));
    }
    (!out.is_empty()).then_some(out)
}

/// Where a load balancer's health checks come from: a router port of the
/// load balancer's router on a link-local /30, bound to the host running
/// the checks, with a namespace behind it (MidoNet put HAProxy there; here
/// the agent checks from it itself). Everything is derived from the load
/// balancer's id, so the cluster and every agent agree without storing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckPort {
    pub port_id: PortId,
    /// The route to the /30 through the port.
    pub route_id: RouteId,
    /// The host end of the checker's veth.
    pub interface_name: String,
    pub network: Ipv4Addr,
    /// The router port's address (the checker's gateway).
    pub router_ip: Ipv4Addr,
    /// The checker's address.
    pub checker_ip: Ipv4Addr,
    pub router_mac: crate::MacAddr,
}

impl HealthCheckPort {
    pub fn of(lb: LoadBalancerId) -> HealthCheckPort {
        let u = lb.uuid().as_u128();
        let h = (u as u64) ^ ((u >> 64) as u64);
        let h = h ^ (h >> 29) ^ (h >> 47);
        // A /30 in 169.254.1.0 - 169.254.254.255, never in 169.254.169.0/24
        // (the metadata address lives there).
        let mut a = 1 + (h % 254) as u8;
        if a == 169 {
            a = 170;
        }
        let b = ((h >> 8) % 64) as u8 * 4;
        let m = (h >> 16).to_be_bytes();
        HealthCheckPort {
            port_id: uuid::Uuid::from_u128(u ^ 0x6865_616c_7468_2d63_6865_636b_2d70_6f72).into(),
            route_id: uuid::Uuid::from_u128(u ^ 0x6865_616c_7468_2d63_6865_636b_2d72_7465).into(),
            interface_name: format!("mhc{:08x}", (u >> 96) as u32),
            network: Ipv4Addr::new(169, 254, a, b),
            router_ip: Ipv4Addr::new(169, 254, a, b + 1),
            checker_ip: Ipv4Addr::new(169, 254, a, b + 2),
            router_mac: crate::MacAddr([0x02, 0x4c, 0x42, m[5], m[6], m[7]]),
        }
    }
}

fn five() -> u32 {
    5
}
fn three() -> u32 {
    3
}
