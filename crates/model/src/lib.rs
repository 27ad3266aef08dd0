//! The midonet-rs topology model: typed ids, the objects operators configure, and
//! their validation.
//!
//! Every object here is plain data with serde derives whose field names are the
//! MidoNet 5.x REST names (camelCase), so the same value is the store encoding
//! (JSON under `/midonet/v1/<kind>/<id>`) and the body of a REST DTO (the
//! cluster adds `uri` and link fields on the way out and drops unknown and
//! read-only keys on the way in).
//!
//! Design notes:
//!
//! * **Typed ids** (`Id<Bridge>`, aliases `BridgeId`, …) make it a type error to
//!   pass a chain id where a port id is expected; on the wire they are UUIDs.
//! * **Flat objects, not enums, where MidoNet is flat.** A `Port` is one struct
//!   with a `type` discriminator (`Bridge`/`Router`) because that is the REST
//!   shape; accessors such as [`Port::router_addr`] give the typed view and
//!   [`Validate`] enforces that only the fields of the port's kind are set.
//! * **Sub-collections are objects of their own** (`TunnelZoneHost`,
//!   `DhcpHost`, `MacTableEntry`, `IpAddrGroupAddr`, …) with the parent id in
//!   them, not vectors embedded in the parent: a whole-object `PUT` of the
//!   parent can then never drop them, and each member is one store key.
//! * **Leniency lives at the edge of the model** ([`lenient`]): MidoNet's own
//!   clients send numbers as strings and `null` for booleans, and Jackson took
//!   both; we do too, so existing clients work unchanged.
//! * **New kinds are one variant away**: [`ObjectKind`] is the registry of
//!   stored kinds (store prefix, REST collection name). BGP peers/networks,
//!   VTEPs and QoS policies slot in as new structs plus a variant each; nothing
//!   that exists needs to change shape.
//!
//! * **Fields are described for tools** ([`schema`]): each object's REST
//!   field names and JSON shapes, derived from the structs and checked by the
//!   compiler, so the CLI's flags follow the model instead of restating it.
//!
//! Deleting and referencing rules (what a delete of a referenced object does)
//! are the cluster's business and are documented there.

pub mod chain;
pub mod device;
pub mod dhcp;
pub mod error;
pub mod host;
pub mod id;
pub mod kind;
pub mod lb;
pub mod lenient;
pub mod mac;
pub mod mirror;
pub mod port;
pub mod route;
pub mod schema;
pub mod topology;
pub mod validate;

pub use chain::{
    Chain, Condition, FlowAction, FragmentPolicy, NatTarget, PortRange, Rule, RuleType,
};
pub use device::{Bridge, Router};
pub use dhcp::{DhcpExtraOpt, DhcpHost, DhcpOpt121Route, DhcpSubnet};
pub use error::FieldError;
pub use host::{
    ArpTableEntry, Host, HostInterface, HostInterfacePort, IpAddrGroup, IpAddrGroupAddr,
    MacTableEntry, PortGroup, TunnelZone, TunnelZoneHost, TunnelZoneType,
};
pub use id::*;
pub use kind::ObjectKind;
pub use lb::{HealthCheckPort, HealthMonitor, LoadBalancer, MonitorKind, Pool, PoolMember, Vip};
pub use mac::{MacAddr, MacMask};
pub use mirror::Mirror;
pub use port::{Port, PortType, RouterPortAddr};
pub use route::{Route, RouteType};
pub use topology::Topology;
pub use validate::Validate;
