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
///
/// On the wire a redirect is MidoNet's form (midonet-behaviour §2.8): REST
/// has no `redirect` type, a redirect is an `l2_transform` rule whose
/// `flowAction` is `redirect`, and an `l2_transform` rule with `flowAction:
/// "accept"` only changes VLAN tags. In Rust the two are
/// [`RuleType::Redirect`] and [`RuleType::L2Transform`], so that code that
/// matches on the type sees two different actions; the private `RuleRepr`
/// maps between the two shapes. `"type": "redirect"` (this server's earlier
/// form) is still read, at no cost: it is the same enum value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(try_from = "repr::RuleRepr", into = "repr::RuleRepr")]
pub struct Rule {
    pub id: RuleId,
    pub chain_id: ChainId,
    /// REST `type`.
    pub rule_type: RuleType,
    /// 1-based position in the chain. On create: where to insert (absent
    /// means 1, as MidoNet 5.x); on read: where the rule is. Not stored.
    pub position: Option<u32>,
    /// The match (its fields are flattened into the rule on the wire).
    pub condition: Condition,
    /// `jump`: the chain to evaluate.
    pub jump_chain_id: Option<ChainId>,
    pub jump_chain_name: Option<String>,
    /// NAT rules: what to do after rewriting (default accept). On the wire
    /// `l2_transform` rules carry `accept` or `redirect` here instead (see
    /// the type docs); in Rust that is the rule type.
    pub flow_action: Option<FlowAction>,
    /// `dnat`/`snat`: where to rewrite to.
    pub nat_targets: Vec<NatTarget>,
    /// `l2_transform` (and redirect): pop the outer VLAN tag.
    pub pop_vlan: bool,
    /// `l2_transform` (and redirect): push this VLAN tag.
    pub push_vlan: Option<u16>,
    /// Redirect: the port to send the packet to.
    pub target_port_id: Option<PortId>,
    /// Redirect: ingress at the target (else egress, skipping its filters).
    pub ingress: bool,
    /// Redirect: if the target is down, continue as if it returned.
    pub fail_open: bool,
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

/// The wire shape of [`Rule`] (see its docs): private, so that the Rust
/// API has one way to say "redirect".
mod repr {
    use super::*;

    // In a module of its own so that the allow covers only the helpers
    // `string_enum!` generates (`ALL`) that this private enum never uses.
    #[allow(dead_code)]
    mod wire {
        crate::string_enum! {
            /// `flowAction` as it is on the wire: the NAT actions plus `redirect`,
            /// which only an `l2_transform` rule carries.
            pub enum WireFlowAction {
                Accept => "accept",
                Continue => "continue",
                Return => "return",
                Redirect => "redirect",
            }
        }
    }
    use wire::WireFlowAction;

    impl From<FlowAction> for WireFlowAction {
        fn from(a: FlowAction) -> Self {
            match a {
                FlowAction::Accept => WireFlowAction::Accept,
                FlowAction::Continue => WireFlowAction::Continue,
                FlowAction::Return => WireFlowAction::Return,
            }
        }
    }

    /// [`Rule`] as it is on the wire (REST body and store encoding).
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct RuleRepr {
        #[serde(default)]
        id: RuleId,
        #[serde(default)]
        chain_id: ChainId,
        #[serde(rename = "type", default)]
        rule_type: RuleType,
        #[serde(
            default,
            deserialize_with = "lenient::opt_num",
            skip_serializing_if = "Option::is_none"
        )]
        position: Option<u32>,
        #[serde(flatten)]
        condition: Condition,
        #[serde(default, deserialize_with = "lenient::opt_parse")]
        jump_chain_id: Option<ChainId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jump_chain_name: Option<String>,
        #[serde(default, deserialize_with = "lenient::opt_parse")]
        flow_action: Option<WireFlowAction>,
        #[serde(default, deserialize_with = "lenient::vec")]
        nat_targets: Vec<NatTarget>,
        #[serde(default, deserialize_with = "lenient::boolean")]
        pop_vlan: bool,
        #[serde(default, deserialize_with = "lenient::opt_num")]
        push_vlan: Option<u16>,
        #[serde(default, deserialize_with = "lenient::opt_parse")]
        target_port_id: Option<PortId>,
        #[serde(default, deserialize_with = "lenient::boolean")]
        ingress: bool,
        #[serde(default, deserialize_with = "lenient::boolean")]
        fail_open: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meter_name: Option<String>,
    }

    impl TryFrom<RuleRepr> for Rule {
        type Error = String;

        fn try_from(w: RuleRepr) -> Result<Rule, String> {
            use RuleType::{L2Transform, Redirect};
            let (rule_type, flow_action) = match (w.rule_type, w.flow_action) {
                (L2Transform | Redirect, Some(WireFlowAction::Redirect)) => (Redirect, None),
                (L2Transform, Some(WireFlowAction::Accept)) => (L2Transform, None),
                (t, Some(WireFlowAction::Redirect)) => {
                    return Err(format!(
                        "flowAction `redirect` is for l2_transform rules only, not {t}"
                    ))
                }
                (t, Some(WireFlowAction::Accept)) => (t, Some(FlowAction::Accept)),
                (t, Some(WireFlowAction::Continue)) => (t, Some(FlowAction::Continue)),
                (t, Some(WireFlowAction::Return)) => (t, Some(FlowAction::Return)),
                (t, None) => (t, None),
            };
            Ok(Rule {
                id: w.id,
                chain_id: w.chain_id,
                rule_type,
                position: w.position,
                condition: w.condition,
                jump_chain_id: w.jump_chain_id,
                jump_chain_name: w.jump_chain_name,
                flow_action,
                nat_targets: w.nat_targets,
                pop_vlan: w.pop_vlan,
                push_vlan: w.push_vlan,
                target_port_id: w.target_port_id,
                ingress: w.ingress,
                fail_open: w.fail_open,
                meter_name: w.meter_name,
            })
        }
    }

    impl From<Rule> for RuleRepr {
        fn from(r: Rule) -> RuleRepr {
            let (rule_type, flow_action) = match r.rule_type {
                RuleType::Redirect => (RuleType::L2Transform, Some(WireFlowAction::Redirect)),
                RuleType::L2Transform => (RuleType::L2Transform, Some(WireFlowAction::Accept)),
                t => (t, r.flow_action.map(WireFlowAction::from)),
            };
            RuleRepr {
                id: r.id,
                chain_id: r.chain_id,
                rule_type,
                position: r.position,
                condition: r.condition,
                jump_chain_id: r.jump_chain_id,
                jump_chain_name: r.jump_chain_name,
                flow_action,
                nat_targets: r.nat_targets,
                pop_vlan: r.pop_vlan,
                push_vlan: r.push_vlan,
                target_port_id: r.target_port_id,
                ingress: r.ingress,
                fail_open: r.fail_open,
                meter_name: r.meter_name,
            }
        }
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

    const PORT: &str = "6b1d2a4e-0f43-4c56-9bd5-2d6f1c1e7a10";

    #[test]
    fn redirect_rule_in_midonet_rest_form_round_trips() {
        // MidoNet's REST form (midonet-behaviour §2.8): no `redirect` type;
        // a redirect is an l2_transform rule whose flowAction is redirect.
        let body = format!(
            r#"{{"type":"l2_transform","flowAction":"redirect","targetPortId":"{PORT}","ingress":true,"failOpen":true,"pushVlan":100,"popVlan":false}}"#
        );
        let r: Rule = serde_json::from_str(&body).expect("parse");
        assert_eq!(r.rule_type, RuleType::Redirect);
        assert_eq!(r.flow_action, None, "the flowAction became the rule type");
        assert_eq!(r.target_port_id.map(|p| p.to_string()), Some(PORT.to_string()));
        assert!(r.ingress && r.fail_open && !r.pop_vlan);
        assert_eq!(r.push_vlan, Some(100));
        let sent: serde_json::Value = serde_json::from_str(&body).expect("json");
        let out = serde_json::to_value(&r).expect("serialize");
        for (k, v) in sent.as_object().expect("object") {
            assert_eq!(&out[k], v, "field {k} written back in MidoNet's form");
        }
        let again: Rule = serde_json::from_value(out).expect("re-parse");
        assert_eq!(again, r);
    }

    #[test]
    fn l2_transform_with_flow_action_accept_is_a_transform_only() {
        let r: Rule =
            serde_json::from_str(r#"{"type":"l2_transform","flowAction":"accept","popVlan":true}"#)
                .expect("parse");
        assert_eq!((r.rule_type, r.flow_action, r.pop_vlan), (RuleType::L2Transform, None, true));
        let out = serde_json::to_value(&r).expect("serialize");
        assert_eq!((&out["type"], &out["flowAction"]), (&"l2_transform".into(), &"accept".into()));
        // Without a flowAction it is a transform too (and is written back
        // with the explicit `accept`).
        let r: Rule =
            serde_json::from_str(r#"{"type":"l2_transform","pushVlan":7}"#).expect("parse");
        assert_eq!(r.rule_type, RuleType::L2Transform);
    }

    #[test]
    fn earlier_redirect_type_still_reads_and_is_written_in_midonet_form() {
        let r: Rule =
            serde_json::from_str(&format!(r#"{{"type":"redirect","targetPortId":"{PORT}"}}"#))
                .expect("parse");
        assert_eq!(r.rule_type, RuleType::Redirect);
        let out = serde_json::to_value(&r).expect("serialize");
        assert_eq!(
            (&out["type"], &out["flowAction"]),
            (&"l2_transform".into(), &"redirect".into())
        );
    }

    #[test]
    fn flow_action_redirect_on_other_rule_types_is_an_error() {
        let e = serde_json::from_str::<Rule>(r#"{"type":"dnat","flowAction":"redirect"}"#)
            .expect_err("not an l2_transform");
        assert!(e.to_string().contains("l2_transform"), "{e}");
        // The NAT flow actions are unchanged.
        let r: Rule =
            serde_json::from_str(r#"{"type":"rev_snat","flowAction":"continue"}"#).expect("parse");
        assert_eq!(r.flow_action, Some(FlowAction::Continue));
        let out = serde_json::to_value(&r).expect("serialize");
        assert_eq!(out["flowAction"], "continue");
    }
}
