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

/// A TCP health monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthMonitor {
    #[serde(default)]
    pub id: HealthMonitorId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(rename = "type", default = "tcp")]
    pub monitor_type: String,
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

fn five() -> u32 {
    5
}
fn three() -> u32 {
    3
}
