//! Virtual devices: bridges (L2 switches) and routers (L3).

use serde::{Deserialize, Serialize};

use crate::id::*;
use crate::lenient;

/// A virtual L2 switch (MidoNet `Bridge`, Neutron network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Bridge {
    #[serde(default)]
    pub id: BridgeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub admin_state_up: bool,
    /// Pre-bridging chain.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub inbound_filter_id: Option<ChainId>,
    /// Post-bridging chain, applied to unicast and flooded frames alike.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub outbound_filter_id: Option<ChainId>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub inbound_mirror_ids: Vec<MirrorId>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub outbound_mirror_ids: Vec<MirrorId>,
}

/// A virtual router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Router {
    #[serde(default)]
    pub id: RouterId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default = "lenient::default_true", deserialize_with = "lenient::boolean_default_true")]
    pub admin_state_up: bool,
    /// Pre-routing chain.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub inbound_filter_id: Option<ChainId>,
    /// Post-routing chain.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub outbound_filter_id: Option<ChainId>,
    /// Chain run on traffic routed between two ports (FWaaS).
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub forward_chain_id: Option<ChainId>,
    /// Chain run on traffic addressed to the router itself.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub local_redirect_chain_id: Option<ChainId>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub load_balancer_id: Option<LoadBalancerId>,
    /// BGP autonomous system number, when the router speaks BGP.
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub as_number: Option<u32>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub inbound_mirror_ids: Vec<MirrorId>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub outbound_mirror_ids: Vec<MirrorId>,
}
