//! The rule resource's vocabulary: its flags, and the one-line summary of a
//! rule's conditions in the `MATCH` column, which uses the same names.
//!
//! Rule flags are written out whole rather than derived from the model
//! ([`crate::flags`]): their names (`--nw-src` for `nwSrcAddress` and
//! `nwSrcLength`), parsing (`--nw-proto tcp`, `--dl-type ipv4`) and
//! inversion switches (`--inv-nw-src`) are the CLI's own vocabulary. Every
//! field of MidoNet's `Condition` has a flag here; a field added to the model
//! later gets a derived flag until it is given one here.

use serde_json::Value;

use midonet_model::schema::Described;
use midonet_model::Condition;

use crate::fields::{FieldSpec, Kind, Kind::*};
use crate::flags::{f, Flag};
use crate::render::cell;

/// The flags of `rule create` (shown in the model's field order). `--type`
/// and `--flow-action` are derived: their help lists the model's choices,
/// so it follows the rule types the model accepts.
pub const RULE_FLAGS: &[Flag] = &[
    f("position", "position", Int, "1-based position in the chain (default: first)"),
    f("jump-chain", "jumpChainId", Ref("chain"), "target chain of a jump rule"),
    f("nat-target", "natTargets", NatTarget, "NAT target ADDR[-ADDR][:PORT[-PORT]] (repeatable)"),
    f("target-port", "targetPortId", Ref("port"), "redirect target port"),
    f("ingress", "ingress", Switch, "redirect into the target port instead of out of it"),
    f("fail-open", "failOpen", Switch, "redirect: pass traffic when the target port is down"),
    f("meter-name", "meterName", Str, "meter that counts matches"),
    f("cond-invert", "condInvert", Switch, "invert the whole condition"),
    f("match-forward-flow", "matchForwardFlow", Switch, "match only forward flows (conntrack)"),
    f("match-return-flow", "matchReturnFlow", Switch, "match only return flows (conntrack)"),
    f("in-ports", "inPorts", RefList("port"), "ingress ports (comma-separated ids)"),
    f("inv-in-ports", "invInPorts", Switch, "invert --in-ports"),
    f("out-ports", "outPorts", RefList("port"), "egress ports (comma-separated ids)"),
    f("inv-out-ports", "invOutPorts", Switch, "invert --out-ports"),
    f("port-group", "portGroup", Ref("port-group"), "source port group"),
    f("inv-port-group", "invPortGroup", Switch, "invert --port-group"),
    f("in-port-group", "inPortGroup", Ref("port-group"), "ingress port group"),
    f("inv-in-port-group", "invInPortGroup", Switch, "invert --in-port-group"),
    f("out-port-group", "outPortGroup", Ref("port-group"), "egress port group"),
    f("inv-out-port-group", "invOutPortGroup", Switch, "invert --out-port-group"),
    f("ip-addr-group-src", "ipAddrGroupSrc", Ref("ip-addr-group"), "source address group"),
    f("inv-ip-addr-group-src", "invIpAddrGroupSrc", Switch, "invert --ip-addr-group-src"),
    f("ip-addr-group-dst", "ipAddrGroupDst", Ref("ip-addr-group"), "destination address group"),
    f("inv-ip-addr-group-dst", "invIpAddrGroupDst", Switch, "invert --ip-addr-group-dst"),
    f("traversed-device", "traversedDevice", Str, "device the packet has traversed"),
    f("inv-traversed-device", "invTraversedDevice", Switch, "invert --traversed-device"),
    f("dl-type", "dlType", EtherType, "ether type (0x0800, ipv4, arp, ipv6)"),
    f("inv-dl-type", "invDlType", Switch, "invert --dl-type"),
    f("dl-src", "dlSrc", Str, "source MAC"),
    f("dl-src-mask", "dlSrcMask", Str, "source MAC mask (ffff.ffff.0000)"),
    f("inv-dl-src", "invDlSrc", Switch, "invert --dl-src"),
    f("dl-dst", "dlDst", Str, "destination MAC"),
    f("dl-dst-mask", "dlDstMask", Str, "destination MAC mask"),
    f("inv-dl-dst", "invDlDst", Switch, "invert --dl-dst"),
    f("nw-tos", "nwTos", Int, "IP TOS byte"),
    f("inv-nw-tos", "invNwTos", Switch, "invert --nw-tos"),
    f("nw-proto", "nwProto", Proto, "IP protocol (number, tcp, udp, icmp)"),
    f("inv-nw-proto", "invNwProto", Switch, "invert --nw-proto"),
    f("nw-src", "nwSrcAddress", Cidr("nwSrcLength"), "source prefix ADDR[/LEN]"),
    f("inv-nw-src", "invNwSrc", Switch, "invert --nw-src"),
    f("nw-dst", "nwDstAddress", Cidr("nwDstLength"), "destination prefix ADDR[/LEN]"),
    f("inv-nw-dst", "invNwDst", Switch, "invert --nw-dst"),
    f("tp-src", "tpSrc", Range, "source port or range (80, 80:81)"),
    f("inv-tp-src", "invTpSrc", Switch, "invert --tp-src"),
    f("tp-dst", "tpDst", Range, "destination port or range (80, 80:81)"),
    f("inv-tp-dst", "invTpDst", Switch, "invert --tp-dst"),
    f("fragment-policy", "fragmentPolicy", Str, "any, header, nonheader, unfragmented"),
    f("no-vlan", "noVlan", Switch, "match only untagged frames"),
    f("vlan", "vlan", Int, "match this VLAN id"),
    f(
        "icmp-data-src",
        "icmpDataSrcIp",
        Cidr("icmpDataSrcLength"),
        "source prefix inside an ICMP error",
    ),
    f("inv-icmp-data-src", "invIcmpDataSrcIp", Switch, "invert --icmp-data-src"),
    f(
        "icmp-data-dst",
        "icmpDataDstIp",
        Cidr("icmpDataDstLength"),
        "destination prefix inside an ICMP error",
    ),
    f("inv-icmp-data-dst", "invIcmpDataDstIp", Switch, "invert --icmp-data-dst"),
    f(
        "match-nw-dst-rewritten",
        "matchNwDstRewritten",
        Switch,
        "match packets whose destination was DNATed",
    ),
    f("pop-vlan", "popVlan", Switch, "l2_transform: pop the VLAN tag"),
    f("push-vlan", "pushVlan", Int, "l2_transform: push this VLAN id"),
];

/// A rule's non-default conditions as `flag=value` words, e.g.
/// `nw-dst=10.0.0.0/24 !tp-dst=80`, with the flag names the user types.
/// A flag is a condition when it sets a field of the model's [`Condition`];
/// inversions are folded in as a `!` prefix.
pub fn conditions(obj: &Value) -> String {
    let flags: &[FieldSpec] = crate::resources::find("rule").map_or(&[], |r| r.fields());
    let is_condition = |key: &str| Condition::fields().iter().any(|c| c.name == key);
    let mut words = Vec::new();
    for fs in flags {
        if !is_condition(fs.key) || fs.flag.starts_with("inv-") {
            continue;
        }
        let v = &obj[fs.key];
        let text = match fs.kind {
            Kind::Switch | Kind::Bool => {
                if v.as_bool() == Some(true) {
                    words.push(fs.flag.to_string());
                }
                continue;
            }
            Kind::Cidr(len_key) => {
                if v.is_null() {
                    continue;
                }
                format!("{}/{}", cell(v), cell(&obj[len_key]))
            }
            _ => {
                if v.is_null() || v.as_array().is_some_and(|a| a.is_empty()) {
                    continue;
                }
                cell(v)
            }
        };
        let inverted = flags
            .iter()
            .find(|i| i.flag == format!("inv-{}", fs.flag))
            .is_some_and(|i| obj[i.key].as_bool() == Some(true));
        let bang = if inverted { "!" } else { "" };
        words.push(format!("{bang}{}={text}", fs.flag));
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_conditions_summary_uses_flag_names() {
        let rule = json!({
            "type": "accept", "position": 1,
            "nwDstAddress": "10.0.0.0", "nwDstLength": 24, "invNwDst": false,
            "tpDst": {"start": 22, "end": 22}, "invTpDst": true,
            "nwProto": 6, "matchForwardFlow": true, "inPorts": [],
            "nwSrcAddress": null, "tpSrc": null,
        });
        assert_eq!(
            conditions(&rule),
            "match-forward-flow nw-proto=6 nw-dst=10.0.0.0/24 !tp-dst=22"
        );
    }

    #[test]
    fn action_fields_are_not_conditions() {
        let rule = json!({"type": "redirect", "targetPortId": "p", "ingress": true,
                          "failOpen": true, "pushVlan": 7, "position": 2});
        assert_eq!(conditions(&rule), "");
    }
}
