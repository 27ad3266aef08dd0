//! Validation of single objects: field ranges, required fields, and
//! consistency between fields of one object. References to other objects
//! (does that chain exist?) are checked by the cluster inside the write
//! transaction, where they can be checked atomically.

use std::net::IpAddr;

use crate::chain::*;
use crate::device::{Bridge, Router};
use crate::dhcp::{DhcpHost, DhcpSubnet};
use crate::error::FieldError;
use crate::host::*;
use crate::lb::*;
use crate::mirror::Mirror;
use crate::port::{prefix_contains, Port, PortType};
use crate::route::{Route, RouteType};

/// Longest name we accept (MidoNet's REST limit).
pub const MAX_NAME_LEN: usize = 255;

/// Checks one object on its own. The error names the REST field.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldError>;
}

type R = Result<(), FieldError>;

fn err(field: &str, msg: impl Into<String>) -> R {
    Err(FieldError::new(field, msg))
}

fn name(n: &str) -> R {
    if n.len() > MAX_NAME_LEN {
        return err("name", format!("must be at most {MAX_NAME_LEN} characters"));
    }
    Ok(())
}

fn vlan(field: &str, v: Option<u16>) -> R {
    match v {
        Some(v) if v > 4094 => err(field, format!("VLAN id {v} is out of range 0..=4094")),
        _ => Ok(()),
    }
}

fn prefix_len(field: &str, addr: Option<IpAddr>, len: Option<u8>) -> R {
    let max = match addr {
        Some(IpAddr::V6(_)) => 128,
        _ => 32,
    };
    match len {
        Some(l) if l > max => err(field, format!("prefix length {l} exceeds {max}")),
        Some(_) if addr.is_none() => {
            err(field, "a prefix length needs its address field to be set too")
        }
        _ => Ok(()),
    }
}

fn range(field: &str, r: Option<PortRange>) -> R {
    match r {
        Some(r) if r.start > r.end => {
            err(field, format!("start {} is greater than end {}", r.start, r.end))
        }
        _ => Ok(()),
    }
}

fn tenant(t: &Option<String>) -> R {
    match t {
        Some(t) if t.len() > MAX_NAME_LEN => err("tenantId", "is too long"),
        _ => Ok(()),
    }
}

impl Validate for Bridge {
    fn validate(&self) -> R {
        tenant(&self.tenant_id)?;
        name(&self.name)
    }
}

impl Validate for Router {
    fn validate(&self) -> R {
        tenant(&self.tenant_id)?;
        name(&self.name)
    }
}

impl Validate for Port {
    fn validate(&self) -> R {
        if self.host_id.is_some() != self.interface_name.is_some() {
            return err(
                if self.host_id.is_some() { "interfaceName" } else { "hostId" },
                "hostId and interfaceName are set together (a binding) or not at all",
            );
        }
        if let Some(n) = &self.interface_name {
            if n.is_empty() || n.len() > 15 || n.contains('/') || n.contains(char::is_whitespace) {
                return err("interfaceName", format!("`{n}` is not a valid interface name"));
            }
        }
        if self.peer_id.is_some() && self.host_id.is_some() {
            return err("peerId", "a port cannot be both linked (interior) and bound (exterior)");
        }
        if self.peer_id == Some(self.id) && !self.id.is_nil() {
            return err("peerId", "a port cannot be linked to itself");
        }
        match self.port_type {
            PortType::Bridge => {
                for (f, set) in [
                    ("portAddress", self.port_address.is_some()),
                    ("networkAddress", self.network_address.is_some()),
                    ("networkLength", self.network_length.is_some()),
                    ("portMac", self.port_mac.is_some()),
                ] {
                    if set {
                        return err(f, "only router ports have addresses");
                    }
                }
                vlan("vlanId", self.vlan_id)
            }
            PortType::Router => {
                if self.vlan_id.is_some() {
                    return err("vlanId", "only bridge ports carry a VLAN id");
                }
                let Some(addr) = self.port_address else {
                    return err("portAddress", "a router port needs an IPv4 address");
                };
                let Some(net) = self.network_address else {
                    return err("networkAddress", "a router port needs its network address");
                };
                let Some(len) = self.network_length else {
                    return err("networkLength", "a router port needs its network length");
                };
                if len > 32 {
                    return err("networkLength", format!("{len} exceeds 32"));
                }
                if !prefix_contains(net, len, addr) {
                    return err("portAddress", format!("{addr} is not inside {net}/{len}"));
                }
                if let Some(mac) = self.port_mac {
                    if mac.is_multicast() || mac == crate::mac::MacAddr::ZERO {
                        return err("portMac", format!("{mac} is not a unicast MAC"));
                    }
                }
                Ok(())
            }
        }
    }
}

impl Validate for Route {
    fn validate(&self) -> R {
        if self.src_network_length > 32 {
            return err("srcNetworkLength", format!("{} exceeds 32", self.src_network_length));
        }
        if self.dst_network_length > 32 {
            return err("dstNetworkLength", format!("{} exceeds 32", self.dst_network_length));
        }
        if self.route_type == RouteType::Normal && self.next_hop_port.is_none() {
            return err("nextHopPort", "a Normal route needs the port to forward out of");
        }
        Ok(())
    }
}

impl Validate for Chain {
    fn validate(&self) -> R {
        tenant(&self.tenant_id)?;
        name(&self.name)
    }
}

impl Validate for Condition {
    fn validate(&self) -> R {
        prefix_len("nwSrcLength", self.nw_src_address, self.nw_src_length)?;
        prefix_len("nwDstLength", self.nw_dst_address, self.nw_dst_length)?;
        prefix_len("icmpDataSrcLength", self.icmp_data_src_ip, self.icmp_data_src_length)?;
        prefix_len("icmpDataDstLength", self.icmp_data_dst_ip, self.icmp_data_dst_length)?;
        range("tpSrc", self.tp_src)?;
        range("tpDst", self.tp_dst)?;
        vlan("vlan", self.vlan)?;
        if self.no_vlan && self.vlan.is_some() {
            return err("noVlan", "cannot match both untagged frames and VLAN tag");
        }
        if self.dl_src_mask.is_some() && self.dl_src.is_none() {
            return err("dlSrcMask", "a mask needs dlSrc");
        }
        if self.dl_dst_mask.is_some() && self.dl_dst.is_none() {
            return err("dlDstMask", "a mask needs dlDst");
        }
        if self.match_forward_flow && self.match_return_flow {
            return err("matchReturnFlow", "a packet cannot be both forward and return flow");
        }
        if self.has_l4_fields() {
            if let Some(p @ (FragmentPolicy::Any | FragmentPolicy::Nonheader)) =
                self.fragment_policy
            {
                return err(
                    "fragmentPolicy",
                    format!("`{p}` cannot be used with tpSrc/tpDst: later fragments have no ports; use header or unfragmented"),
                );
            }
        }
        Ok(())
    }
}

impl Validate for Rule {
    fn validate(&self) -> R {
        self.condition.validate()?;
        if self.position == Some(0) {
            return err("position", "positions start at 1");
        }
        let nat = matches!(self.rule_type, RuleType::Dnat | RuleType::Snat);
        let rev_nat = matches!(self.rule_type, RuleType::RevDnat | RuleType::RevSnat);
        if !nat && !self.nat_targets.is_empty() {
            return err(
                "natTargets",
                format!("only dnat and snat rules have NAT targets, not {}", self.rule_type),
            );
        }
        if !(nat || rev_nat) && self.flow_action.is_some() {
            // An l2_transform's `accept`/`redirect` never gets here: on the
            // wire they select the rule type (see `Rule`).
            let what = if self.rule_type == RuleType::L2Transform {
                "an l2_transform rule's flowAction is accept (a VLAN transform) or redirect"
                    .to_string()
            } else {
                format!("only NAT and l2_transform rules have a flowAction, not {}", self.rule_type)
            };
            return err("flowAction", what);
        }
        match self.rule_type {
            RuleType::Jump => {
                if self.jump_chain_id.is_none() {
                    return err("jumpChainId", "a jump rule needs the chain to jump to");
                }
                if self.jump_chain_id == Some(self.chain_id) && !self.chain_id.is_nil() {
                    return err("jumpChainId", "a chain cannot jump to itself");
                }
            }
            RuleType::Dnat | RuleType::Snat => {
                if self.nat_targets.is_empty() {
                    return err("natTargets", "a NAT rule needs at least one target");
                }
                for t in &self.nat_targets {
                    if u32::from(t.address_from) > u32::from(t.address_to) {
                        return err(
                            "natTargets",
                            format!(
                                "addressFrom {} is after addressTo {}",
                                t.address_from, t.address_to
                            ),
                        );
                    }
                    if t.port_from > t.port_to {
                        return err(
                            "natTargets",
                            format!(
                                "portFrom {} is greater than portTo {}",
                                t.port_from, t.port_to
                            ),
                        );
                    }
                    if !t.is_static() && t.port_from == 0 {
                        return err("natTargets", "a dynamic NAT port range starts at 1 or more");
                    }
                }
                let statics = self.nat_targets.iter().filter(|t| t.is_static()).count();
                if statics > 0 && statics != self.nat_targets.len() {
                    return err(
                        "natTargets",
                        "targets are either all static (ports 0-0) or all dynamic",
                    );
                }
                if statics > 1 {
                    return err("natTargets", "a static NAT rule has exactly one target");
                }
                if statics == 1
                    && self.nat_targets[0].address_from != self.nat_targets[0].address_to
                {
                    return err("natTargets", "a static NAT target is a single address");
                }
            }
            RuleType::L2Transform | RuleType::Redirect => {
                vlan("pushVlan", self.push_vlan)?;
                if self.rule_type == RuleType::Redirect && self.target_port_id.is_none() {
                    return err(
                        "targetPortId",
                        "a redirect (flowAction redirect) needs its target port",
                    );
                }
                if self.rule_type == RuleType::L2Transform
                    && !self.pop_vlan
                    && self.push_vlan.is_none()
                {
                    return err("pushVlan", "an l2_transform rule needs popVlan or pushVlan");
                }
            }
            _ => {}
        }
        if !matches!(self.rule_type, RuleType::L2Transform | RuleType::Redirect)
            && (self.pop_vlan || self.push_vlan.is_some())
        {
            return err("pushVlan", "only l2_transform rules change VLAN tags");
        }
        if self.rule_type != RuleType::Redirect && self.target_port_id.is_some() {
            return err(
                "targetPortId",
                "only a redirect (l2_transform with flowAction redirect) has a target port",
            );
        }
        Ok(())
    }
}

impl Validate for PortGroup {
    fn validate(&self) -> R {
        tenant(&self.tenant_id)?;
        name(&self.name)
    }
}

impl Validate for IpAddrGroup {
    fn validate(&self) -> R {
        tenant(&self.tenant_id)?;
        name(&self.name)
    }
}

impl Validate for IpAddrGroupAddr {
    fn validate(&self) -> R {
        let v = if self.addr.is_ipv4() { 4 } else { 6 };
        if self.version != 0 && self.version != v {
            return err("version", format!("{} is an IPv{v} address", self.addr));
        }
        Ok(())
    }
}

impl Validate for Host {
    fn validate(&self) -> R {
        name(&self.name)?;
        if self.container_limit < -1 {
            return err("containerLimit", "must be -1 (no limit) or more");
        }
        Ok(())
    }
}

impl Validate for HostInterface {
    fn validate(&self) -> R {
        if self.name.is_empty() || self.name.len() > 15 {
            return err("name", "an interface name has 1 to 15 characters");
        }
        Ok(())
    }
}

impl Validate for TunnelZone {
    fn validate(&self) -> R {
        if self.name.trim().is_empty() {
            return err("name", "a tunnel zone needs a name");
        }
        name(&self.name)
    }
}

impl Validate for TunnelZoneHost {
    fn validate(&self) -> R {
        match self.ip_address {
            None => err("ipAddress", "a member needs its underlay IPv4 address"),
            Some(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() => {
                err("ipAddress", format!("{ip} is not a unicast address"))
            }
            _ => {
                if self.host_id.is_nil() {
                    return err("hostId", "a member needs a host id");
                }
                Ok(())
            }
        }
    }
}

impl Validate for DhcpSubnet {
    fn validate(&self) -> R {
        if self.subnet_length > 32 {
            return err("subnetLength", format!("{} exceeds 32", self.subnet_length));
        }
        if let Some(gw) = self.default_gateway {
            if !prefix_contains(self.subnet_prefix, self.subnet_length, gw) {
                return err("defaultGateway", format!("{gw} is not inside the subnet"));
            }
        }
        if let Some(mtu) = self.interface_mtu {
            if !(68..=65535).contains(&mtu) {
                return err("interfaceMTU", format!("{mtu} is below the IPv4 minimum of 68"));
            }
        }
        for r in &self.opt121_routes {
            if r.destination_length > 32 {
                return err(
                    "opt121Routes",
                    format!("prefix length {} exceeds 32", r.destination_length),
                );
            }
        }
        Ok(())
    }
}

impl Validate for DhcpHost {
    fn validate(&self) -> R {
        if self.mac_addr.is_multicast() {
            return err("macAddr", format!("{} is not a unicast MAC", self.mac_addr));
        }
        name(&self.name)
    }
}

impl Validate for MacTableEntry {
    fn validate(&self) -> R {
        if self.mac_addr.is_multicast() {
            return err("macAddr", format!("{} is not a unicast MAC", self.mac_addr));
        }
        vlan("vlanId", Some(self.vlan_id))
    }
}

impl Validate for ArpTableEntry {
    fn validate(&self) -> R {
        if self.mac.is_multicast() {
            return err("mac", format!("{} is not a unicast MAC", self.mac));
        }
        if self.ip.is_unspecified() || self.ip.is_broadcast() || self.ip.is_multicast() {
            return err("ip", format!("{} is not a unicast address", self.ip));
        }
        Ok(())
    }
}

impl Validate for LoadBalancer {
    fn validate(&self) -> R {
        tenant(&self.tenant_id)
    }
}

impl Validate for Pool {
    fn validate(&self) -> R {
        if !self.protocol.eq_ignore_ascii_case("TCP") {
            return err("protocol", format!("`{}` is not supported; only TCP", self.protocol));
        }
        if !self.lb_method.eq_ignore_ascii_case("ROUND_ROBIN") {
            return err(
                "lbMethod",
                format!("`{}` is not supported; only ROUND_ROBIN", self.lb_method),
            );
        }
        Ok(())
    }
}

impl Validate for PoolMember {
    fn validate(&self) -> R {
        if self.protocol_port == 0 {
            return err("protocolPort", "must be 1..=65535");
        }
        if self.weight == 0 {
            return err("weight", "must be at least 1");
        }
        Ok(())
    }
}

impl Validate for Vip {
    fn validate(&self) -> R {
        if self.protocol_port == 0 {
            return err("protocolPort", "must be 1..=65535");
        }
        match self.session_persistence.as_deref() {
            None | Some("SOURCE_IP") => Ok(()),
            Some(o) => err("sessionPersistence", format!("`{o}` is not supported; only SOURCE_IP")),
        }
    }
}

impl Validate for HealthMonitor {
    fn validate(&self) -> R {
        let Some(kind) = self.kind() else {
            return err(
                "type",
                format!("`{}` is not supported; TCP, HTTP or PING", self.monitor_type),
            );
        };
        if kind == crate::MonitorKind::Http {
            if !self.url_path.starts_with('/') || self.url_path.chars().any(char::is_whitespace) {
                return err("urlPath", "must start with `/` and hold no spaces");
            }
            if !matches!(self.http_method.to_ascii_uppercase().as_str(), "GET" | "HEAD") {
                return err("httpMethod", format!("`{}`: only GET or HEAD", self.http_method));
            }
            if crate::lb::parse_codes(&self.expected_codes).is_none() {
                return err(
                    "expectedCodes",
                    format!("`{}`: codes or ranges like 200,202-204", self.expected_codes),
                );
            }
        }
        if self.delay == 0 {
            return err("delay", "must be at least 1 second");
        }
        if self.timeout == 0 {
            return err("timeout", "must be at least 1 second");
        }
        if self.max_retries == 0 || self.max_retries > 10 {
            return err("maxRetries", "must be 1..=10");
        }
        Ok(())
    }
}

impl Validate for Mirror {
    fn validate(&self) -> R {
        if self.to_port_id.is_none() {
            return err("toPortId", "a mirror needs the port to copy to");
        }
        for c in &self.conditions {
            c.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_json::from_str(s).expect("parse")
    }

    #[test]
    fn router_port_needs_consistent_addressing() {
        let p: Port = parse(
            r#"{"type":"Router","portAddress":"10.0.1.1","networkAddress":"10.0.0.0","networkLength":24}"#,
        );
        assert_eq!(p.validate().expect_err("outside").field, "portAddress");
        let p: Port = parse(r#"{"type":"Router","networkAddress":"10.0.0.0","networkLength":24}"#);
        assert_eq!(p.validate().expect_err("missing").field, "portAddress");
        let p: Port = parse(
            r#"{"type":"Router","portAddress":"10.0.0.1","networkAddress":"10.0.0.0","networkLength":33}"#,
        );
        assert_eq!(p.validate().expect_err("len").field, "networkLength");
        let p: Port = parse(
            r#"{"type":"Router","portAddress":"10.0.0.1","networkAddress":"10.0.0.0","networkLength":24,"portMac":"01:00:5e:00:00:01"}"#,
        );
        assert_eq!(p.validate().expect_err("mcast mac").field, "portMac");
        let p: Port = parse(
            r#"{"type":"Router","portAddress":"10.0.0.1","networkAddress":"10.0.0.0","networkLength":24}"#,
        );
        p.validate().expect("valid");
    }

    #[test]
    fn bridge_port_rejects_router_fields_and_bad_vlan() {
        let p: Port = parse(r#"{"type":"Bridge","portAddress":"10.0.0.1"}"#);
        assert_eq!(p.validate().expect_err("addr").field, "portAddress");
        let p: Port = parse(r#"{"type":"Bridge","vlanId":5000}"#);
        assert_eq!(p.validate().expect_err("vlan").field, "vlanId");
        let p: Port = parse(r#"{"type":"Bridge","hostId":"6b1d2a4e-0f43-4c56-9bd5-2d6f1c1e7a10"}"#);
        assert_eq!(p.validate().expect_err("half binding").field, "interfaceName");
    }

    #[test]
    fn normal_route_needs_port() {
        let r: Route = parse(r#"{"dstNetworkAddr":"10.0.0.0","dstNetworkLength":24}"#);
        assert_eq!(r.validate().expect_err("no port").field, "nextHopPort");
        let r: Route =
            parse(r#"{"type":"BlackHole","dstNetworkAddr":"10.0.0.0","dstNetworkLength":40}"#);
        assert_eq!(r.validate().expect_err("len").field, "dstNetworkLength");
    }

    #[test]
    fn rule_type_specific_fields_are_checked() {
        let r: Rule = parse(r#"{"type":"jump"}"#);
        assert_eq!(r.validate().expect_err("target").field, "jumpChainId");
        let r: Rule = parse(r#"{"type":"dnat"}"#);
        assert_eq!(r.validate().expect_err("targets").field, "natTargets");
        let r: Rule = parse(
            r#"{"type":"snat","natTargets":[{"addressFrom":"1.1.1.1","addressTo":"1.1.1.2","portFrom":0,"portTo":0}]}"#,
        );
        assert_eq!(r.validate().expect_err("static range").field, "natTargets");
        let r: Rule = parse(
            r#"{"type":"snat","natTargets":[{"addressFrom":"1.1.1.1","addressTo":"1.1.1.1","portFrom":2000,"portTo":1000}]}"#,
        );
        assert_eq!(r.validate().expect_err("ports").field, "natTargets");
        let r: Rule =
            parse(r#"{"type":"accept","tpDst":{"start":80,"end":80},"fragmentPolicy":"any"}"#);
        assert_eq!(r.validate().expect_err("frag").field, "fragmentPolicy");
        let r: Rule = parse(r#"{"type":"accept","tpDst":{"start":90,"end":80}}"#);
        assert_eq!(r.validate().expect_err("range").field, "tpDst");
        let r: Rule = parse(r#"{"type":"redirect"}"#);
        assert_eq!(r.validate().expect_err("target").field, "targetPortId");
        let r: Rule = parse(r#"{"type":"l2_transform","flowAction":"redirect"}"#);
        assert_eq!(r.validate().expect_err("target").field, "targetPortId");
        let r: Rule = parse(r#"{"type":"l2_transform","flowAction":"continue","pushVlan":1}"#);
        assert_eq!(r.validate().expect_err("flow action").field, "flowAction");
        let r: Rule = parse(r#"{"type":"accept","pushVlan":10}"#);
        assert_eq!(r.validate().expect_err("vlan").field, "pushVlan");
        let r: Rule = parse(r#"{"type":"accept","nwSrcAddress":"10.0.0.0","nwSrcLength":33}"#);
        assert_eq!(r.validate().expect_err("len").field, "nwSrcLength");
        let r: Rule = parse(r#"{"type":"l2_transform","pushVlan":10}"#);
        r.validate().expect("valid");
        let r: Rule = parse(
            r#"{"type":"dnat","flowAction":"accept","natTargets":[{"addressFrom":"10.0.0.5","addressTo":"10.0.0.9","portFrom":80,"portTo":80}]}"#,
        );
        r.validate().expect("valid dynamic dnat");
    }

    #[test]
    fn tunnel_zone_member_needs_unicast_ip() {
        let m: TunnelZoneHost = parse(r#"{"hostId":"6b1d2a4e-0f43-4c56-9bd5-2d6f1c1e7a10"}"#);
        assert_eq!(m.validate().expect_err("ip").field, "ipAddress");
        let m: TunnelZoneHost =
            parse(r#"{"hostId":"6b1d2a4e-0f43-4c56-9bd5-2d6f1c1e7a10","ipAddress":"224.0.0.1"}"#);
        assert_eq!(m.validate().expect_err("mcast").field, "ipAddress");
    }

    #[test]
    fn dhcp_subnet_gateway_inside() {
        let s: DhcpSubnet =
            parse(r#"{"subnetPrefix":"10.0.0.0","subnetLength":24,"defaultGateway":"10.0.1.1"}"#);
        assert_eq!(s.validate().expect_err("gw").field, "defaultGateway");
    }
}
