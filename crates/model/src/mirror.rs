//! Port mirroring: copy matching packets to a port.

use serde::{Deserialize, Serialize};

use crate::chain::Condition;
use crate::id::*;
use crate::lenient;

/// A mirror: packets matching any of `conditions` (OR) are copied to
/// `toPortId`. An empty list matches everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    #[serde(default)]
    pub id: MirrorId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub to_port_id: Option<PortId>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub conditions: Vec<Condition>,
}
