//! Rule chains: ordered rules, each a [`Condition`] and an action.
//!
//! The condition set is MidoNet's complete one (reference §2.8): every field
//! unset matches anything; most fields have an invert flag; `condInvert`
//! inverts the conjunction of all of them except the fragment policy, which
//! is checked on its own.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::id::*;
use crate::lenient;
use crate::mac::{MacAddr, MacMask};

/// A named, ordered list of rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    #[serde(default)]
    pub id: ChainId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub name: String,
    /// The chain's rules, in evaluation order. Owned by the cluster (rule
    /// create/delete with `position` edits it); read-only over the API.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub rule_ids: Vec<RuleId>,
}

crate::string_enum! {
    /// The rule types of MidoNet's REST `Rule-v2`.
    #[derive(Default)]
    pub enum RuleType {
        #[default]
        Accept => "accept",
        Drop => "drop",
        Reject => "reject",
        Return => "return",
        Jump => "jump",
        Dnat => "dnat",
        Snat => "snat",
        RevDnat => "rev_dnat",
        RevSnat => "rev_snat",
        L2Transform => "l2_transform",
        Redirect => "redirect",
    }
}

crate::string_enum! {
    /// What a NAT rule does after it rewrites.
    pub enum FlowAction {
        Accept => "accept",
        Continue => "continue",
        Return => "return",
    }
}

crate::string_enum! {
    /// Which IP fragments a condition matches.
    pub enum FragmentPolicy {
        /// Any packet, fragmented or not.
        Any => "any",
        /// Unfragmented packets and first fragments (the L4 header is there).
        Header => "header",
        /// Non-first fragments only.
        Nonheader => "nonheader",
        /// Unfragmented packets only.
        Unfragmented => "unfragmented",
    }
}

/// An inclusive L4 port range (`{"start":22,"end":22}`); for ICMP, `tpSrc` is
/// the type and `tpDst` the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    #[serde(deserialize_with = "range_bound")]
    pub start: u16,
    #[serde(deserialize_with = "range_bound")]
    pub end: u16,
}

fn range_bound<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    lenient::opt_num(d)?.ok_or_else(|| serde::de::Error::custom("range bound must be set"))
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        self.start <= p && p <= self.end
    }
}

/// A NAT target: an address range and a port range. A rule whose targets
/// all have ports 0–0 is *static* (stateless, IP only, one target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NatTarget {
    pub address_from: std::net::Ipv4Addr,
    pub address_to: std::net::Ipv4Addr,
    #[serde(default, deserialize_with = "lenient::num")]
    pub port_from: u16,
    #[serde(default, deserialize_with = "lenient::num")]
    pub port_to: u16,
}

impl NatTarget {
    pub fn is_static(&self) -> bool {
        self.port_from == 0 && self.port_to == 0
    }
}

/// The match part of a rule or a mirror. REST names in comments where they
/// differ from the field name converted to camelCase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Invert the whole conjunction (not the fragment policy).
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub cond_invert: bool,
    /// Conntrack: the packet starts or continues a forward flow.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub match_forward_flow: bool,
    /// Conntrack: the packet is return traffic of a tracked flow.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub match_return_flow: bool,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub in_ports: Vec<PortId>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_in_ports: bool,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub out_ports: Vec<PortId>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_out_ports: bool,
    /// The ingress exterior port is in this group.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub port_group: Option<PortGroupId>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_port_group: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub in_port_group: Option<PortGroupId>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_in_port_group: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub out_port_group: Option<PortGroupId>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_out_port_group: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub ip_addr_group_src: Option<IpAddrGroupId>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_ip_addr_group_src: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub ip_addr_group_dst: Option<IpAddrGroupId>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_ip_addr_group_dst: bool,
    /// The packet already went through this device.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub traversed_device: Option<DeviceId>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_traversed_device: bool,
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub dl_type: Option<u16>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_dl_type: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub dl_src: Option<MacAddr>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub dl_src_mask: Option<MacMask>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_dl_src: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub dl_dst: Option<MacAddr>,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub dl_dst_mask: Option<MacMask>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_dl_dst: bool,
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub nw_tos: Option<u8>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_nw_tos: bool,
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub nw_proto: Option<u8>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_nw_proto: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub nw_src_address: Option<IpAddr>,
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub nw_src_length: Option<u8>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_nw_src: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub nw_dst_address: Option<IpAddr>,
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub nw_dst_length: Option<u8>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_nw_dst: bool,
    #[serde(default)]
    pub tp_src: Option<PortRange>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_tp_src: bool,
    #[serde(default)]
    pub tp_dst: Option<PortRange>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_tp_dst: bool,
    /// Unset means the REST default: `header` when an L4 field is set, `any`
    /// otherwise ([`Condition::effective_fragment_policy`]).
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub fragment_policy: Option<FragmentPolicy>,
    /// Match only frames without an 802.1Q tag.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub no_vlan: bool,
    /// Match only frames tagged with this VLAN.
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub vlan: Option<u16>,
    /// Source address embedded in an ICMP error's payload.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub icmp_data_src_ip: Option<IpAddr>,
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub icmp_data_src_length: Option<u8>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_icmp_data_src_ip: bool,
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub icmp_data_dst_ip: Option<IpAddr>,
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub icmp_data_dst_length: Option<u8>,
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub inv_icmp_data_dst_ip: bool,
    /// DNAT or reverse SNAT already rewrote the destination on this device.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub match_nw_dst_rewritten: bool,
}

impl Condition {
    /// Whether any L4 field (ports) is set.
    pub fn has_l4_fields(&self) -> bool {
        self.tp_src.is_some() || self.tp_dst.is_some()
    }
    /// The fragment policy in force: the explicit one, or MidoNet's REST
    /// default (`header` with L4 fields, `any` without).
    pub fn effective_fragment_policy(&self) -> FragmentPolicy {
        self.fragment_policy.unwrap_or(if self.has_l4_fields() {
            FragmentPolicy::Header
        } else {
            FragmentPolicy::Any
        })
    }
}

/// A rule of a chain. `type` selects the action; the type-specific fields
/// are only meaningful (and only accepted by validation) for their types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub id: RuleId,
    #[serde(default)]
    pub chain_id: ChainId,
    #[serde(rename = "type", default)]
    pub rule_type: RuleType,
    /// 1-based position in the chain. On create: where to insert (absent
    /// means 1, as MidoNet 5.x); on read: where the rule is. Not stored.
    #[serde(
        default,
        deserialize_with = "lenient::opt_num",
        skip_serializing_if = "Option::is_none"
    )]
    pub position: Option<u32>,
    #[serde(flatten)]
    pub condition: Condition,
    /// `jump`: the chain to evaluate.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub jump_chain_id: Option<ChainId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump_chain_name: Option<String>,
    /// NAT rules: what to do after rewriting (default accept).
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub flow_action: Option<FlowAction>,
    /// `dnat`/`snat`: where to rewrite to.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub nat_targets: Vec<NatTarget>,
    /// `l2_transform`/`redirect`: pop the outer VLAN tag.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub pop_vlan: bool,
    /// `l2_transform`/`redirect`: push this VLAN tag.
    #[serde(default, deserialize_with = "lenient::opt_num")]
    pub push_vlan: Option<u16>,
    /// `redirect`: the port to send the packet to.
    #[serde(default, deserialize_with = "lenient::opt_parse")]
    pub target_port_id: Option<PortId>,
    /// `redirect`: ingress at the target (else egress, skipping its filters).
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub ingress: bool,
    /// `redirect`: if the target is down, continue as if it returned.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub fail_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_name: Option<String>,
}

impl Rule {
    /// A `dnat`/`snat` rule whose targets all have port range 0–0.
    pub fn is_static_nat(&self) -> bool {
        matches!(self.rule_type, RuleType::Dnat | RuleType::Snat)
            && !self.nat_targets.is_empty()
            && self.nat_targets.iter().all(NatTarget::is_static)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_client_rule_body_with_nulls_parses() {
        // What midonetclient's add_chain_rule sends (reference A5).
        let body = r#"{"type":"accept","nwSrcAddress":null,"nwSrcLength":null,"invNwSrc":false,"nwDstAddress":"10.0.0.0","nwDstLength":24,"invNwDst":null,"tpSrc":null,"invTpSrc":null,"tpDst":{"start":22,"end":22},"invTpDst":null,"dlSrc":null,"invDlSrc":false,"dlDst":null,"invDlDst":false,"ipAddrGroupSrc":null,"invIpAddrGroupSrc":false,"ipAddrGroupDst":null,"invIpAddrGroupDst":false,"nwProto":6,"invNwProto":false,"dlType":null,"invDlType":false,"jumpChainId":null,"jumpChainName":null,"matchForwardFlow":false,"matchReturnFlow":false,"position":null,"properties":null}"#;
        let r: Rule = serde_json::from_str(body).expect("parse");
        assert_eq!(r.rule_type, RuleType::Accept);
        assert_eq!(r.condition.nw_proto, Some(6));
        assert_eq!(r.condition.tp_dst, Some(PortRange { start: 22, end: 22 }));
        assert_eq!(r.condition.effective_fragment_policy(), FragmentPolicy::Header);
        assert_eq!(r.position, None);
    }

    #[test]
    fn cli_rule_body_with_strings_parses() {
        let body = r#"{"type":"drop","invNwSrc":false,"nwSrcAddress":"192.168.0.0","nwSrcLength":"16","position":"1","tpDst":{"start":"22","end":"22"}}"#;
        let r: Rule = serde_json::from_str(body).expect("parse");
        assert_eq!(r.position, Some(1));
        assert_eq!(r.condition.nw_src_length, Some(16));
        assert_eq!(r.condition.tp_dst.map(|t| t.end), Some(22));
    }

    #[test]
    fn static_nat_detection() {
        let r: Rule = serde_json::from_str(
            r#"{"type":"dnat","flowAction":"accept","natTargets":[{"addressFrom":"10.0.0.5","addressTo":"10.0.0.5","portFrom":0,"portTo":0}]}"#,
        )
        .expect("parse");
        assert!(r.is_static_nat());
        assert_eq!(r.flow_action, Some(FlowAction::Accept));
    }
}
