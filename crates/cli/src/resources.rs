//! The resource table: everything the CLI knows about each resource.
//!
//! One [`ResourceSpec`] per resource drives parsing (flags), requests
//! (where the collection is) and output (columns). Adding a resource is adding
//! a row here; [`crate::commands`] has no per-resource code apart from the
//! few actions that are not CRUD (port link/unlink, host interfaces).
//!
//! What the model already says is not said again here. A row names its model
//! type ([`ResourceSpec::model`]) and every field of that type becomes a flag
//! ([`crate::flags`] derives the name, parsing and help); the row writes out
//! only the flags the model cannot give (another name, special parsing,
//! help that says more), the fields that must not be flags (`no_flag`), and
//! the list columns. `show` prints every field the server sends, so nothing
//! needs listing for it. Columns stay written out: they are a choice of the
//! few fields that fit in a row, under short headers (`IN-FILTER`), and a
//! test checks that each names a field of the model.
//!
//! Where things live is discovered, never built from path strings:
//! * top-level collections and `{id}` templates come from the API root
//!   (`bridges`, `bridgeTemplate`);
//! * children come from link fields of the fetched parent (`bridge.ports`,
//!   `chain.rules`, `host.ports`), with a fallback path segment only for servers
//!   that omit the link.
//!
//! Objects without an id of their own (bindings, tunnel-zone members, DHCP
//! hosts, MAC/ARP entries, ...) are found by listing the parent's collection
//! and matching a [`Key`]; the entry's own `uri` is then used for show/delete.

use midonet_model as m;

use crate::fields::{FieldSpec, Kind::*};
use crate::flags::{f, h, stored, view, Flag, Model};

/// How one column's text is taken from an object.
#[derive(Debug, Clone, Copy)]
pub enum Col {
    /// The value of one key.
    Key(&'static str),
    /// `addr/len` from two keys.
    Cidr(&'static str, &'static str),
    /// `start-end` from a `{start,end}` object.
    Range(&'static str),
    /// A summary of a rule's non-default conditions.
    Conditions,
}

/// How entries are identified for show/update/delete.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// By `id`, through the root template (or a name, through the collection).
    Id,
    /// By the value of one field (compared case-insensitively: MACs).
    Field(&'static str),
    /// By `ADDR/LEN` matched against two fields.
    Cidr(&'static str, &'static str),
}

/// A parent a resource can be created or listed under.
#[derive(Debug, Clone, Copy)]
pub struct ParentSpec {
    /// Flag naming the parent (`--bridge ID`).
    pub flag: &'static str,
    /// The parent's resource name in [`RESOURCES`].
    pub resource: &'static str,
    /// Link field of the parent object that holds the child collection.
    pub link: &'static str,
    /// Path segment under the parent's `uri` if the link field is missing.
    pub fallback: &'static str,
    /// Fields set on create when created under this parent (port `type`).
    pub defaults: &'static [(&'static str, &'static str)],
}

/// Verbs beyond CRUD that a resource supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// `port link ID --peer PEER` / `port unlink ID`.
    Link,
    /// `host interfaces ID`.
    Interfaces,
    /// `load-balancer status [ID]`.
    LbStatus,
    /// `host enroll [ID] [--out FILE]` / `host revoke ID`: agent credentials.
    Credential,
}

#[derive(Debug, Clone, Copy)]
pub struct ResourceSpec {
    /// CLI name (`tunnel-zone`).
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub about: &'static str,
    /// Root key of the top-level collection, if there is one.
    pub collection: Option<&'static str>,
    /// Root key of the `{id}` template, if there is one.
    pub template: Option<&'static str>,
    /// Parents this resource can live under.
    pub parents: &'static [ParentSpec],
    /// Whether create and list need one of `parents` (routes, rules, ...).
    pub parent_required: bool,
    pub key: Key,
    /// Whether update/delete are offered.
    pub writable: bool,
    /// Whether create is offered (hosts are registered by agents, not
    /// created by users).
    pub creatable: bool,
    /// The model type whose fields become flags; `None` only for a
    /// membership the model keeps inside another object (port-group ports).
    pub model: Option<Model>,
    /// Flags written out where the model cannot give them (see
    /// [`crate::flags`]).
    pub flags: &'static [Flag],
    /// Model fields that get no flag: read-only, set from the parent's URI,
    /// or changed by another verb.
    pub no_flag: &'static [&'static str],
    pub columns: &'static [(&'static str, Col)],
    pub extras: &'static [Extra],
}

impl ResourceSpec {
    /// Every flag, one per model field in the model's order (see [`crate::flags`]).
    pub fn fields(&self) -> &'static [FieldSpec] {
        crate::flags::of(self)
    }
    pub fn field(&self, flag: &str) -> Option<&'static FieldSpec> {
        self.fields().iter().find(|fs| fs.flag == flag)
    }
    pub fn has_tenant(&self) -> bool {
        self.fields().iter().any(|fs| fs.key == "tenantId")
    }
}

/// Looks a resource up by name or alias.
pub fn find(name: &str) -> Option<&'static ResourceSpec> {
    RESOURCES.iter().find(|r| r.name == name || r.aliases.contains(&name))
}

/// What most rows share; each row says how it differs.
const BASE: ResourceSpec = ResourceSpec {
    name: "",
    aliases: &[],
    about: "",
    collection: None,
    template: None,
    parents: &[],
    parent_required: false,
    key: Key::Id,
    writable: true,
    creatable: true,
    model: None,
    flags: &[],
    no_flag: &[],
    columns: &[],
    extras: &[],
};

const fn under(
    flag: &'static str,
    resource: &'static str,
    link: &'static str,
    fallback: &'static str,
) -> ParentSpec {
    ParentSpec { flag, resource, link, fallback, defaults: &[] }
}

const ID: (&str, Col) = ("ID", Col::Key("id"));
const NAME: (&str, Col) = ("NAME", Col::Key("name"));
const TENANT: (&str, Col) = ("TENANT", Col::Key("tenantId"));
const UP: (&str, Col) = ("UP", Col::Key("adminStateUp"));
const STATUS: (&str, Col) = ("STATUS", Col::Key("status"));
const TYPE: (&str, Col) = ("TYPE", Col::Key("type"));

pub static RESOURCES: &[ResourceSpec] = &[
    ResourceSpec {
        name: "bridge",
        aliases: &["bridges"],
        about: "virtual L2 switches",
        collection: Some("bridges"),
        template: Some("bridgeTemplate"),
        model: stored::<m::Bridge>(),
        columns: &[
            ID,
            NAME,
            TENANT,
            UP,
            ("IN-FILTER", Col::Key("inboundFilterId")),
            ("OUT-FILTER", Col::Key("outboundFilterId")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "router",
        aliases: &["routers"],
        about: "virtual L3 routers",
        collection: Some("routers"),
        template: Some("routerTemplate"),
        model: stored::<m::Router>(),
        flags: &[
            h("forwardChainId", "chain applied to forwarded packets"),
            h("asNumber", "BGP AS number"),
        ],
        columns: &[
            ID,
            NAME,
            TENANT,
            UP,
            ("IN-FILTER", Col::Key("inboundFilterId")),
            ("OUT-FILTER", Col::Key("outboundFilterId")),
            ("LOAD-BALANCER", Col::Key("loadBalancerId")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "port",
        aliases: &["ports"],
        about: "bridge and router ports (create with --bridge or --router)",
        collection: Some("ports"),
        template: Some("portTemplate"),
        parents: &[
            ParentSpec {
                defaults: &[("type", "Bridge")],
                ..under("bridge", "bridge", "ports", "ports")
            },
            ParentSpec {
                defaults: &[("type", "Router")],
                ..under("router", "router", "ports", "ports")
            },
        ],
        model: stored::<m::Port>(),
        flags: &[
            h("type", "Bridge or Router (default: from the parent)"),
            h("vlanId", "bridge port: VLAN id"),
            h("portAddress", "router port: IP address"),
            f("network", "networkAddress", Cidr("networkLength"), "router port: network ADDR/LEN"),
            h("portMac", "router port: MAC (default: generated)"),
            h("vifId", "VIF id"),
        ],
        // The device comes from the parent, the tunnel key from the cluster;
        // `port link`, `binding` and `port-group-port` set the peer, the host
        // interface and the groups (the cluster keeps them on update).
        no_flag: &["deviceId", "tunnelKey", "hostId", "interfaceName", "peerId", "portGroupIds"],
        columns: &[
            ID,
            TYPE,
            ("DEVICE", Col::Key("deviceId")),
            ("ADDRESS", Col::Key("portAddress")),
            ("NETWORK", Col::Cidr("networkAddress", "networkLength")),
            ("MAC", Col::Key("portMac")),
            ("PEER", Col::Key("peerId")),
            ("HOST", Col::Key("hostId")),
            ("INTERFACE", Col::Key("interfaceName")),
            UP,
        ],
        extras: &[Extra::Link],
        ..BASE
    },
    ResourceSpec {
        name: "route",
        aliases: &["routes"],
        about: "router routes (--router)",
        template: Some("routeTemplate"),
        parents: &[under("router", "router", "routes", "routes")],
        parent_required: true,
        model: stored::<m::Route>(),
        flags: &[
            h("type", "Normal (default), BlackHole, Reject, Local"),
            f(
                "src",
                "srcNetworkAddr",
                Cidr("srcNetworkLength"),
                "source prefix (default 0.0.0.0/0)",
            ),
            f("dst", "dstNetworkAddr", Cidr("dstNetworkLength"), "destination prefix"),
            h("nextHopPort", "egress router port"),
            h("nextHopGateway", "next-hop IP address"),
            h("weight", "weight (default 100; lower wins)"),
        ],
        // `learned` is set by the agent that learned the route (BGP).
        no_flag: &["routerId", "learned"],
        columns: &[
            ID,
            TYPE,
            ("SRC", Col::Cidr("srcNetworkAddr", "srcNetworkLength")),
            ("DST", Col::Cidr("dstNetworkAddr", "dstNetworkLength")),
            ("NEXT-HOP-PORT", Col::Key("nextHopPort")),
            ("GATEWAY", Col::Key("nextHopGateway")),
            ("WEIGHT", Col::Key("weight")),
            ("LEARNED", Col::Key("learned")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "chain",
        aliases: &["chains"],
        about: "rule chains (filters)",
        collection: Some("chains"),
        template: Some("chainTemplate"),
        model: stored::<m::Chain>(),
        // Rules are added and removed with `rule create/delete`.
        no_flag: &["ruleIds"],
        columns: &[ID, NAME, TENANT],
        ..BASE
    },
    ResourceSpec {
        name: "rule",
        aliases: &["rules"],
        about: "chain rules (--chain); every condition has a flag",
        template: Some("ruleTemplate"),
        parents: &[under("chain", "chain", "rules", "rules")],
        parent_required: true,
        model: stored::<m::Rule>(),
        flags: crate::rule::RULE_FLAGS,
        // The server fills in the jump chain's name from its id.
        no_flag: &["chainId", "jumpChainName"],
        columns: &[
            ("POS", Col::Key("position")),
            ID,
            TYPE,
            ("MATCH", Col::Conditions),
            ("JUMP-CHAIN", Col::Key("jumpChainId")),
            ("FLOW-ACTION", Col::Key("flowAction")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "host",
        aliases: &["hosts"],
        about: "hypervisor hosts (registered by agents; update/delete only)",
        collection: Some("hosts"),
        template: Some("hostTemplate"),
        creatable: false,
        model: stored::<m::Host>(),
        flags: &[
            h("floodingProxyWeight", "weight as VTEP flooding proxy"),
            h("containerWeight", "weight for service containers"),
            h("containerLimit", "max service containers (-1: no limit)"),
            h("enforceContainerLimit", "enforce --container-limit"),
        ],
        // Reported by the host's agent.
        no_flag: &["name", "addresses", "alive", "datapath"],
        columns: &[
            ID,
            NAME,
            ("ALIVE", Col::Key("alive")),
            ("DATAPATH", Col::Key("datapath")),
            ("ADDRESSES", Col::Key("addresses")),
        ],
        extras: &[Extra::Interfaces, Extra::Credential],
        ..BASE
    },
    ResourceSpec {
        name: "binding",
        aliases: &["bindings", "host-interface-port"],
        about: "host interface ↔ port bindings (--host)",
        parents: &[under("host", "host", "ports", "ports")],
        parent_required: true,
        key: Key::Field("portId"),
        model: view::<m::HostInterfacePort>(),
        flags: &[
            h("portId", "port to bind"),
            f("interface", "interfaceName", Str, "host interface name"),
        ],
        no_flag: &["hostId"],
        columns: &[
            ("HOST", Col::Key("hostId")),
            ("PORT", Col::Key("portId")),
            ("INTERFACE", Col::Key("interfaceName")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "tunnel-zone",
        aliases: &["tunnel-zones", "tz"],
        about: "tunnel zones",
        collection: Some("tunnelZones"),
        template: Some("tunnelZoneTemplate"),
        model: stored::<m::TunnelZone>(),
        flags: &[h("type", "vxlan (default), gre, vtep")],
        columns: &[ID, NAME, TYPE],
        ..BASE
    },
    ResourceSpec {
        name: "tunnel-zone-member",
        aliases: &["tunnel-zone-members", "tz-member"],
        about: "hosts in a tunnel zone (--tunnel-zone)",
        parents: &[under("tunnel-zone", "tunnel-zone", "hosts", "hosts")],
        parent_required: true,
        key: Key::Field("hostId"),
        model: stored::<m::TunnelZoneHost>(),
        flags: &[
            h("hostId", "member host"),
            f("ip", "ipAddress", Str, "host's tunnel endpoint address"),
        ],
        no_flag: &["tunnelZoneId"],
        columns: &[
            ("TUNNEL-ZONE", Col::Key("tunnelZoneId")),
            ("HOST", Col::Key("hostId")),
            ("IP", Col::Key("ipAddress")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "port-group",
        aliases: &["port-groups"],
        about: "port groups",
        collection: Some("portGroups"),
        template: Some("portGroupTemplate"),
        model: stored::<m::PortGroup>(),
        flags: &[h("stateful", "share flow state among members")],
        columns: &[ID, NAME, TENANT, ("STATEFUL", Col::Key("stateful"))],
        ..BASE
    },
    ResourceSpec {
        name: "port-group-port",
        aliases: &["port-group-ports", "pg-port"],
        about: "ports in a port group (--port-group)",
        parents: &[under("port-group", "port-group", "ports", "ports")],
        parent_required: true,
        key: Key::Field("portId"),
        // Membership is the port's `portGroupIds` in the model; this is
        // MidoNet's view of it, with no model type of its own.
        model: None,
        flags: &[f("port", "portId", Ref("port"), "member port")],
        columns: &[("PORT-GROUP", Col::Key("portGroupId")), ("PORT", Col::Key("portId"))],
        ..BASE
    },
    ResourceSpec {
        name: "ip-addr-group",
        aliases: &["ip-addr-groups"],
        about: "IP address groups",
        collection: Some("ipAddrGroups"),
        template: Some("ipAddrGroupTemplate"),
        model: stored::<m::IpAddrGroup>(),
        columns: &[ID, NAME],
        ..BASE
    },
    ResourceSpec {
        name: "ip-addr-group-addr",
        aliases: &["ip-addr-group-addrs", "ip-addr"],
        about: "addresses in an IP address group (--ip-addr-group)",
        parents: &[under("ip-addr-group", "ip-addr-group", "addrs", "ip_addrs")],
        parent_required: true,
        key: Key::Field("addr"),
        model: stored::<m::IpAddrGroupAddr>(),
        flags: &[h("addr", "IP address"), h("version", "4 or 6 (default: from the address)")],
        no_flag: &["ipAddrGroupId"],
        columns: &[
            ("GROUP", Col::Key("ipAddrGroupId")),
            ("ADDR", Col::Key("addr")),
            ("VERSION", Col::Key("version")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "dhcp-subnet",
        aliases: &["dhcp-subnets", "dhcp"],
        about: "DHCP subnets of a bridge (--bridge); named by ADDR/LEN",
        parents: &[under("bridge", "bridge", "dhcpSubnets", "dhcp")],
        parent_required: true,
        key: Key::Cidr("subnetPrefix", "subnetLength"),
        model: stored::<m::DhcpSubnet>(),
        flags: &[
            f("subnet", "subnetPrefix", Cidr("subnetLength"), "subnet ADDR/LEN"),
            f("gateway", "defaultGateway", Str, "default gateway offered"),
            f("server", "serverAddr", Str, "DHCP server address"),
            f("dns", "dnsServerAddrs", List, "DNS servers (comma-separated, repeatable)"),
            f("mtu", "interfaceMTU", Int, "interface MTU offered"),
            h("opt121Routes", "option 121 routes as JSON array"),
            h("enabled", "serve DHCP on this subnet (default true)"),
        ],
        no_flag: &["bridgeId"],
        columns: &[
            ("SUBNET", Col::Cidr("subnetPrefix", "subnetLength")),
            ("GATEWAY", Col::Key("defaultGateway")),
            ("SERVER", Col::Key("serverAddr")),
            ("DNS", Col::Key("dnsServerAddrs")),
            ("MTU", Col::Key("interfaceMTU")),
            ("ENABLED", Col::Key("enabled")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "dhcp-host",
        aliases: &["dhcp-hosts"],
        about: "static DHCP leases (--bridge and --subnet); named by MAC",
        parents: &[under("subnet", "dhcp-subnet", "hosts", "hosts")],
        parent_required: true,
        key: Key::Field("macAddr"),
        model: stored::<m::DhcpHost>(),
        flags: &[
            f("mac", "macAddr", Str, "client MAC"),
            f("ip", "ipAddr", Str, "address to offer"),
            f(
                "extra-opts",
                "extraDhcpOpts",
                Json,
                "extra options as JSON [{\"optName\",\"optValue\"}]",
            ),
        ],
        no_flag: &["bridgeId", "subnet"],
        columns: &[("MAC", Col::Key("macAddr")), ("IP", Col::Key("ipAddr")), NAME],
        ..BASE
    },
    ResourceSpec {
        name: "mac-entry",
        aliases: &["mac-table", "mac-entries"],
        about: "static MAC table entries of a bridge (--bridge); named by MAC",
        parents: &[under("bridge", "bridge", "macTable", "mac_table")],
        parent_required: true,
        key: Key::Field("macAddr"),
        model: stored::<m::MacTableEntry>(),
        flags: &[
            f("mac", "macAddr", Str, "MAC address"),
            h("portId", "bridge port the MAC is behind"),
            f("vlan", "vlanId", Int, "VLAN id"),
        ],
        no_flag: &["bridgeId"],
        columns: &[
            ("MAC", Col::Key("macAddr")),
            ("PORT", Col::Key("portId")),
            ("VLAN", Col::Key("vlanId")),
        ],
        ..BASE
    },
    ResourceSpec {
        name: "arp-entry",
        aliases: &["arp-table", "arp-entries"],
        about: "static ARP entries of a bridge (--bridge); named by IP",
        parents: &[under("bridge", "bridge", "arpTable", "arp_table")],
        parent_required: true,
        key: Key::Field("ip"),
        model: stored::<m::ArpTableEntry>(),
        flags: &[h("ip", "IPv4 address"), h("mac", "MAC address")],
        no_flag: &["bridgeId"],
        columns: &[("IP", Col::Key("ip")), ("MAC", Col::Key("mac"))],
        ..BASE
    },
    ResourceSpec {
        name: "load-balancer",
        aliases: &["load-balancers", "lb"],
        about: "L4 load balancers",
        collection: Some("loadBalancers"),
        template: Some("loadBalancerTemplate"),
        model: stored::<m::LoadBalancer>(),
        flags: &[h("routerId", "router the load balancer sits on")],
        columns: &[ID, ("ROUTER", Col::Key("routerId")), UP],
        extras: &[Extra::LbStatus],
        ..BASE
    },
    ResourceSpec {
        name: "pool",
        aliases: &["pools"],
        about: "load-balancer pools",
        collection: Some("pools"),
        template: Some("poolTemplate"),
        model: stored::<m::Pool>(),
        flags: &[
            h("loadBalancerId", "owning load balancer"),
            h("protocol", "TCP (default)"),
            h("lbMethod", "ROUND_ROBIN (default)"),
        ],
        // Set by health checking.
        no_flag: &["status"],
        columns: &[
            ID,
            ("LOAD-BALANCER", Col::Key("loadBalancerId")),
            ("HEALTH-MONITOR", Col::Key("healthMonitorId")),
            ("PROTOCOL", Col::Key("protocol")),
            ("METHOD", Col::Key("lbMethod")),
            STATUS,
            UP,
        ],
        ..BASE
    },
    ResourceSpec {
        name: "pool-member",
        aliases: &["pool-members", "member"],
        about: "pool members (backends)",
        collection: Some("poolMembers"),
        template: Some("poolMemberTemplate"),
        model: stored::<m::PoolMember>(),
        flags: &[
            h("poolId", "owning pool"),
            h("address", "backend IPv4 address"),
            h("protocolPort", "backend port"),
            h("weight", "weight (default 1)"),
        ],
        no_flag: &["status"],
        columns: &[
            ID,
            ("POOL", Col::Key("poolId")),
            ("ADDRESS", Col::Key("address")),
            ("PORT", Col::Key("protocolPort")),
            ("WEIGHT", Col::Key("weight")),
            STATUS,
            UP,
        ],
        ..BASE
    },
    ResourceSpec {
        name: "vip",
        aliases: &["vips"],
        about: "virtual IPs of load balancers",
        collection: Some("vips"),
        template: Some("vipTemplate"),
        model: stored::<m::Vip>(),
        flags: &[
            h("loadBalancerId", "owning load balancer"),
            h("poolId", "pool serving this VIP"),
            h("address", "virtual IPv4 address"),
            h("protocolPort", "virtual port"),
            h("sessionPersistence", "SOURCE_IP or none"),
        ],
        columns: &[
            ID,
            ("LOAD-BALANCER", Col::Key("loadBalancerId")),
            ("POOL", Col::Key("poolId")),
            ("ADDRESS", Col::Key("address")),
            ("PORT", Col::Key("protocolPort")),
            ("PERSISTENCE", Col::Key("sessionPersistence")),
            UP,
        ],
        ..BASE
    },
    ResourceSpec {
        name: "health-monitor",
        aliases: &["health-monitors", "hm"],
        about: "pool health monitors",
        collection: Some("healthMonitors"),
        template: Some("healthMonitorTemplate"),
        model: stored::<m::HealthMonitor>(),
        flags: &[
            h("type", "TCP (default)"),
            h("delay", "seconds between probes"),
            h("timeout", "seconds to wait for an answer"),
            h("maxRetries", "failures before a member is down"),
        ],
        no_flag: &["status"],
        columns: &[
            ID,
            TYPE,
            ("DELAY", Col::Key("delay")),
            ("TIMEOUT", Col::Key("timeout")),
            ("RETRIES", Col::Key("maxRetries")),
            STATUS,
            UP,
        ],
        ..BASE
    },
    ResourceSpec {
        name: "mirror",
        aliases: &["mirrors"],
        about: "port mirrors (conditions via --conditions JSON)",
        collection: Some("mirrors"),
        template: Some("mirrorTemplate"),
        model: stored::<m::Mirror>(),
        flags: &[
            h("toPortId", "port that receives the copies"),
            h("conditions", "JSON array of rule conditions (camelCase keys)"),
        ],
        columns: &[ID, ("TO-PORT", Col::Key("toPortId")), ("CONDITIONS", Col::Key("conditions"))],
        ..BASE
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_aliases_and_flags_are_unique() {
        let mut names = HashSet::new();
        for r in RESOURCES {
            for n in std::iter::once(&r.name).chain(r.aliases) {
                assert!(names.insert(*n), "duplicate resource name {n}");
            }
            let mut flags = HashSet::new();
            for fs in r.fields() {
                assert!(flags.insert(&fs.flag), "{}: duplicate flag --{}", r.name, fs.flag);
            }
        }
    }

    #[test]
    fn references_point_at_known_resources() {
        for r in RESOURCES {
            for p in r.parents {
                assert!(find(p.resource).is_some(), "{}: parent {}", r.name, p.resource);
            }
            for fs in r.fields() {
                if let crate::fields::Kind::Ref(t) | crate::fields::Kind::RefList(t) = fs.kind {
                    assert!(find(t).is_some(), "{}: --{} refers to {t}", r.name, fs.flag);
                }
            }
            // Objects keyed by id must be reachable for show/delete.
            if matches!(r.key, Key::Id) {
                assert!(r.template.is_some() || r.collection.is_some(), "{}", r.name);
            }
        }
    }
}
