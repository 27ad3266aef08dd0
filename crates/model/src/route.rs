//! Router routes.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::id::*;
use crate::lenient;

crate::string_enum! {
    /// What a route does with the packets it matches.
    #[derive(Default)]
    pub enum RouteType {
        /// Forward out of `nextHopPort`, to `nextHopGateway` if set.
        #[default]
        Normal => "Normal",
        /// Drop silently.
        BlackHole => "BlackHole" | "blackhole" | "black_hole",
        /// Drop and answer ICMP admin-prohibited.
        Reject => "Reject",
        /// Addressed to the router itself (echo replies, BGP).
        Local => "Local",
    }
}

fn default_weight() -> u32 {
    100
}

/// A route in a router's table. Selection: longest destination prefix whose
/// source prefix also matches, then lowest weight, then ECMP over the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    #[serde(default)]
    pub id: RouteId,
    #[serde(default)]
    pub router_id: RouterId,
    #[serde(rename = "type", default)]
    pub route_type: RouteType,
    #[serde(default = "any_addr", deserialize_with = "src_addr")]
    pub src_network_addr: Ipv4Addr,
    #[serde(default, deserialize_with = "lenient::num")]
    pub src_network_length: u8,
    #[serde(default = "any_addr", deserialize_with = "src_addr")]
    pub dst_network_addr: Ipv4Addr,
    #[serde(default, deserialize_with = "lenient::num")]
    pub dst_network_length: u8,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub next_hop_port: Option<PortId>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub next_hop_gateway: Option<Ipv4Addr>,
    #[serde(default = "default_weight", deserialize_with = "weight")]
    pub weight: u32,
    /// Set for routes learned by an agent (BGP); read-only over the API.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub learned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<String>,
}

fn any_addr() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}

fn src_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    Ok(lenient::opt_parse(d)?.unwrap_or(Ipv4Addr::UNSPECIFIED))
}

fn weight<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(lenient::opt_num(d)?.unwrap_or(100))
}

impl Default for Route {
    fn default() -> Self {
        Route {
            id: RouteId::nil(),
            router_id: RouterId::nil(),
            route_type: RouteType::Normal,
            src_network_addr: Ipv4Addr::UNSPECIFIED,
            src_network_length: 0,
            dst_network_addr: Ipv4Addr::UNSPECIFIED,
            dst_network_length: 0,
            next_hop_port: None,
            next_hop_gateway: None,
            weight: 100,
            learned: false,
            attributes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_route_body_gets_defaults() {
        // midonet-cli omits type and weight and sends lengths as strings.
        let r: Route = serde_json::from_str(
            r#"{"srcNetworkAddr":"0.0.0.0","srcNetworkLength":"0","dstNetworkAddr":"10.0.0.0","dstNetworkLength":"24","nextHopPort":"6b1d2a4e-0f43-4c56-9bd5-2d6f1c1e7a10"}"#,
        )
        .expect("parse");
        assert_eq!(r.route_type, RouteType::Normal);
        assert_eq!(r.weight, 100);
        assert_eq!(r.dst_network_length, 24);
        let r: Route =
            serde_json::from_str(r#"{"type":"BlackHole","weight":null,"nextHopGateway":null}"#)
                .expect("parse");
        assert_eq!(r.route_type, RouteType::BlackHole);
        assert_eq!(r.weight, 100);
    }
}
