//! The REST fields of every object: each field's name and the JSON it takes,
//! derived from the model structs.
//!
//! Tools that build or show objects field by field (the `midonet` CLI's
//! flags and columns, API documentation) need more than serde tells at run
//! time: every field's REST name, including the fields serde skips while
//! they are unset, and what JSON each takes, including an unset `Option`
//! (which serializes as `null` and says nothing). [`Described::fields`]
//! answers both, and cannot fall behind the structs:
//!
//! * **The compiler checks completeness.** `describe!` below names each
//!   struct's fields once, and the code it generates builds the struct from
//!   exactly those fields, so a field added to a struct but not named here
//!   is a build error in this file ("missing field `x` in initializer").
//! * **Shapes come from the Rust types** through [`HasShape`]: an
//!   `Option<ChainId>` field is a reference to a chain, a `Vec<PortId>` a
//!   list of port references, a [`string_enum!`](crate::string_enum) type a
//!   choice among its canonical spellings. Nobody restates a type.
//! * **REST names** are the camelCase of the Rust names (the structs'
//!   `rename_all = "camelCase"`), or the `as "..."` written here for the few
//!   fields serde renames; a test sends a sample of every struct through
//!   serde and back to check each name and shape.
//!
//! Rejected: wrapping the struct definitions in a macro (every model file
//! would change shape, and `macro_rules` would have to re-parse serde's
//! attributes); a proc-macro derive (a new crate for one table); reading
//! names off serialized samples at run time (no type for an unset
//! `Option`, and `skip_serializing_if` fields go missing).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use crate::chain::{Chain, Condition, NatTarget, PortRange, Rule};
use crate::device::{Bridge, Router};
use crate::dhcp::{DhcpExtraOpt, DhcpHost, DhcpOpt121Route, DhcpSubnet};
use crate::host::*;
use crate::id::{Device, Id};
use crate::kind::ObjectKind;
use crate::lb::*;
use crate::mac::{MacAddr, MacMask};
use crate::mirror::Mirror;
use crate::port::Port;
use crate::route::Route;
use crate::topology::Stored;

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Kind(ObjectKind),
    /// A bridge or a router ([`crate::DeviceId`]).
    Device,
}

/// The JSON that one value of a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A string.
    Text,
    /// An integer (numbers as strings are accepted too, see [`crate::lenient`]).
    Int,
    Bool,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A MAC address, `02:00:00:aa:bb:cc`.
    Mac,
    /// A MAC mask, `ffff.ffff.0000`.
    MacMask,
    /// One of these strings (compared case-insensitively on input).
    Choice(&'static [&'static str]),
    /// The id (a UUID string) of another object.
    Ref(Target),
    /// `{"start": N, "end": M}`.
    PortRange,
    /// A nested object: a NAT target, a condition, a DHCP option, ...
    Object,
}

/// A type that a model field can have.
pub trait HasShape {
    const SHAPE: Shape;
    /// Whether the field is a JSON array of `SHAPE` values.
    const MANY: bool = false;
}

macro_rules! shapes {
    ($($t:ty => $s:ident),+ $(,)?) => { $(impl HasShape for $t { const SHAPE: Shape = Shape::$s; })+ };
}

shapes! {
    String => Text, bool => Bool, u8 => Int, u16 => Int, u32 => Int, i32 => Int,
    Ipv4Addr => Ip, IpAddr => Ip, MacAddr => Mac, MacMask => MacMask, PortRange => PortRange,
    NatTarget => Object, Condition => Object, DhcpOpt121Route => Object, DhcpExtraOpt => Object,
}

impl<T: HasShape> HasShape for Option<T> {
    const SHAPE: Shape = T::SHAPE;
    const MANY: bool = T::MANY;
}
impl<T: HasShape> HasShape for Vec<T> {
    const SHAPE: Shape = T::SHAPE;
    const MANY: bool = true;
}
impl<T: Stored> HasShape for Id<T> {
    const SHAPE: Shape = Shape::Ref(Target::Kind(T::KIND));
}
impl HasShape for Id<Device> {
    const SHAPE: Shape = Shape::Ref(Target::Device);
}

/// One REST field of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The REST (serde) name: `inboundFilterId`.
    pub name: String,
    pub shape: Shape,
    /// A JSON array of `shape` values.
    pub many: bool,
}

/// An object whose fields are described here.
pub trait Described {
    /// Every field, in declaration order, then those of a flattened struct.
    fn fields() -> &'static [Field];
}

/// `inbound_filter_id` → `inboundFilterId`, as serde's `camelCase`.
fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn field(rust: &str, rename: Option<&str>, (shape, many): (Shape, bool)) -> Field {
    Field { name: rename.map_or_else(|| camel(rust), str::to_owned), shape, many }
}

/// The shape of the field that `get` reads, found by type inference.
fn shape_of<S, T: HasShape>(_get: impl Fn(&S) -> &T) -> (Shape, bool) {
    (T::SHAPE, T::MANY)
}

/// `Type { field, field as "restName", ..flattened: Type }`, for each type.
macro_rules! describe {
    ($($ty:ident {
        $($field:ident $(as $rename:literal)?),+ $(, ..$flat:ident: $fty:ident)? $(,)?
    })+) => {
        $(impl Described for $ty {
            fn fields() -> &'static [Field] {
                static FIELDS: OnceLock<Vec<Field>> = OnceLock::new();
                FIELDS.get_or_init(|| {
                    // Builds the struct from the listed fields: a field added
                    // to the struct but not to this table fails to build,
                    // here ("missing field `x` in initializer of `Type`").
                    let _complete =
                        |v: $ty| $ty { $($field: v.$field,)+ $($flat: v.$flat)? };
                    #[allow(unused_mut)]
                    let mut fields = vec![$(
                        field(
                            stringify!($field),
                            None $(.or(Some($rename)))?,
                            shape_of(|v: &$ty| &v.$field),
                        ),
                    )+];
                    $(fields.extend_from_slice(<$fty as Described>::fields());)?
                    fields
                })
            }
        })+

        /// Every described type through serde and back (see the tests).
        #[cfg(test)]
        fn check_every_described_type() {
            $(tests::round_trip::<$ty>(stringify!($ty));)+
        }
    };
}

describe! {
    Bridge {
        id, tenant_id, name, admin_state_up, inbound_filter_id, outbound_filter_id,
        inbound_mirror_ids, outbound_mirror_ids,
    }
    Router {
        id, tenant_id, name, admin_state_up, inbound_filter_id, outbound_filter_id,
        forward_chain_id, local_redirect_chain_id, load_balancer_id, as_number,
        inbound_mirror_ids, outbound_mirror_ids,
    }
    Port {
        id, port_type as "type", device_id, admin_state_up, inbound_filter_id,
        outbound_filter_id, tunnel_key, host_id, interface_name, peer_id, vif_id,
        port_group_ids, inbound_mirror_ids, outbound_mirror_ids, post_in_filter_mirror_ids,
        pre_out_filter_mirror_ids, vlan_id, port_address, network_address, network_length,
        port_mac,
    }
    Route {
        id, router_id, route_type as "type", src_network_addr, src_network_length,
        dst_network_addr, dst_network_length, next_hop_port, next_hop_gateway, weight, learned,
        attributes,
    }
    Chain { id, tenant_id, name, rule_ids }
    Condition {
        cond_invert, match_forward_flow, match_return_flow, in_ports, inv_in_ports, out_ports,
        inv_out_ports, port_group, inv_port_group, in_port_group, inv_in_port_group,
        out_port_group, inv_out_port_group, ip_addr_group_src, inv_ip_addr_group_src,
        ip_addr_group_dst, inv_ip_addr_group_dst, traversed_device, inv_traversed_device,
        dl_type, inv_dl_type, dl_src, dl_src_mask, inv_dl_src, dl_dst, dl_dst_mask, inv_dl_dst,
        nw_tos, inv_nw_tos, nw_proto, inv_nw_proto, nw_src_address, nw_src_length, inv_nw_src,
        nw_dst_address, nw_dst_length, inv_nw_dst, tp_src, inv_tp_src, tp_dst, inv_tp_dst,
        fragment_policy, no_vlan, vlan, icmp_data_src_ip, icmp_data_src_length,
        inv_icmp_data_src_ip, icmp_data_dst_ip, icmp_data_dst_length, inv_icmp_data_dst_ip,
        match_nw_dst_rewritten,
    }
    Rule {
        id, chain_id, rule_type as "type", position, jump_chain_id, jump_chain_name,
        flow_action, nat_targets, pop_vlan, push_vlan, target_port_id, ingress, fail_open,
        meter_name, ..condition: Condition
    }
    Mirror { id, tenant_id, to_port_id, conditions }
    Host {
        id, name, addresses, alive, datapath, flooding_proxy_weight, container_weight, container_limit,
        enforce_container_limit,
    }
    HostInterface { host_id, name, mac, mtu, status, if_type as "type", endpoint, addresses }
    HostInterfacePort { host_id, port_id, interface_name }
    TunnelZone { id, name, zone_type as "type" }
    TunnelZoneHost { tunnel_zone_id, host_id, ip_address }
    PortGroup { id, tenant_id, name, stateful }
    IpAddrGroup { id, tenant_id, name }
    IpAddrGroupAddr { ip_addr_group_id, addr, version }
    MacTableEntry { bridge_id, mac_addr, port_id, vlan_id }
    ArpTableEntry { bridge_id, ip, mac }
    DhcpSubnet {
        bridge_id, subnet_prefix, subnet_length, default_gateway, server_addr, dns_server_addrs,
        interface_mtu as "interfaceMTU", opt121_routes, enabled,
    }
    DhcpHost { bridge_id, subnet, mac_addr, ip_addr, name, extra_dhcp_opts }
    LoadBalancer { id, tenant_id, router_id, admin_state_up }
    Pool { id, load_balancer_id, health_monitor_id, protocol, lb_method, admin_state_up, status }
    PoolMember { id, pool_id, address, protocol_port, weight, admin_state_up, status }
    Vip {
        id, load_balancer_id, pool_id, address, protocol_port, session_persistence,
        admin_state_up,
    }
    HealthMonitor {
        id, tenant_id, monitor_type as "type", url_path, http_method, expected_codes, delay,
        timeout, max_retries, admin_state_up, status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{de::DeserializeOwned, Serialize};
    use serde_json::{json, Map, Value};

    /// A value of the field's shape that serde gives back unchanged.
    fn sample(f: &Field) -> Value {
        let one = match f.shape {
            Shape::Text => json!("x"),
            Shape::Int => json!(1),
            Shape::Bool => json!(true),
            Shape::Ip => json!("10.0.0.1"),
            Shape::Mac => json!("02:00:00:00:00:01"),
            Shape::MacMask => json!("ffff.ffff.0000"),
            Shape::Choice(names) => json!(names[0]),
            Shape::Ref(_) => json!("6b1d2a4e-0f43-4c56-9bd5-2d6f1c1e7a10"),
            Shape::PortRange => json!({"start": 1, "end": 2}),
            // Nested objects are described by their own types; an empty
            // list is enough to check the name.
            Shape::Object if f.many => return json!([]),
            Shape::Object => json!({}),
        };
        if f.many {
            json!([one])
        } else {
            one
        }
    }

    /// Every described field set, through serde and back: a wrong name is
    /// dropped on the way in (or comes back under another name), a wrong
    /// shape fails to parse or comes back changed.
    pub(super) fn round_trip<T: Described + Serialize + DeserializeOwned>(ty: &str) {
        let sent: Map<String, Value> =
            T::fields().iter().map(|f| (f.name.clone(), sample(f))).collect();
        assert_eq!(sent.len(), T::fields().len(), "{ty}: a name is described twice");
        let parsed: T = serde_json::from_value(Value::Object(sent.clone()))
            .unwrap_or_else(|e| panic!("{ty}: the described sample does not parse: {e}"));
        let back = serde_json::to_value(&parsed).expect("serialize");
        assert_eq!(back, Value::Object(sent), "{ty}: serde's fields differ from the description");
    }

    #[test]
    fn descriptions_match_serde() {
        check_every_described_type();
    }

    #[test]
    fn shapes_come_from_the_types() {
        let port = Port::fields();
        let get = |name: &str| {
            port.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(get("type").shape, Shape::Choice(&["Bridge", "Router"]));
        assert_eq!(get("inboundFilterId").shape, Shape::Ref(Target::Kind(ObjectKind::Chain)));
        assert_eq!(get("deviceId").shape, Shape::Ref(Target::Device));
        let groups = get("portGroupIds");
        assert_eq!(
            (groups.shape, groups.many),
            (Shape::Ref(Target::Kind(ObjectKind::PortGroup)), true)
        );
        assert_eq!(get("vlanId").shape, Shape::Int);
        // A flattened struct's fields are the outer object's.
        assert!(Rule::fields().iter().any(|f| f.name == "nwSrcAddress" && f.shape == Shape::Ip));
    }

    #[test]
    fn camel_case_as_serde() {
        assert_eq!(camel("inbound_filter_id"), "inboundFilterId");
        assert_eq!(camel("opt121_routes"), "opt121Routes");
        assert_eq!(camel("id"), "id");
    }
}
