//! The resource table: everything the CLI knows about each resource.
//!
//! One [`ResourceSpec`] per resource drives parsing (flags), requests
//! (where the collection is) and output (columns). Adding a resource is adding
//! a row here; [`crate::commands`] has no per-resource code apart from the
//! few actions that are not CRUD (port link/unlink, host interfaces).
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

use crate::fields::{f, FieldSpec, Kind::*};

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
    pub fields: &'static [FieldSpec],
    pub columns: &'static [(&'static str, Col)],
    pub extras: &'static [Extra],
}

impl ResourceSpec {
    pub fn field(&self, flag: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|fs| fs.flag == flag)
    }
    pub fn has_tenant(&self) -> bool {
        self.fields.iter().any(|fs| fs.key == "tenantId")
    }
}

/// Looks a resource up by name or alias.
pub fn find(name: &str) -> Option<&'static ResourceSpec> {
    RESOURCES.iter().find(|r| r.name == name || r.aliases.contains(&name))
}

const NO_PARENTS: &[ParentSpec] = &[];

const fn under(
    flag: &'static str,
    resource: &'static str,
    link: &'static str,
    fallback: &'static str,
) -> ParentSpec {
    ParentSpec { flag, resource, link, fallback, defaults: &[] }
}

const ADMIN_UP: FieldSpec =
    f("admin-state-up", "adminStateUp", Bool, "administrative state (true/false)");
const NAME: FieldSpec = f("name", "name", Str, "name");
const TENANT: FieldSpec = f("tenant", "tenantId", Str, "tenant (project) id");

/// Rule condition flags, shared by rules and (as documentation) mirrors.
/// Every field of MidoNet's `Condition` has a flag; `--set` covers the rest.
pub const RULE_FIELDS: &[FieldSpec] = &[
    f("type", "type", Str, "accept, drop, reject, return, jump, dnat, snat, rev_dnat, rev_snat, l2_transform, redirect"),
    f("position", "position", Int, "1-based position in the chain (default: first)"),
    f("jump-chain", "jumpChainId", Ref("chain"), "target chain of a jump rule"),
    f("flow-action", "flowAction", Str, "what a NAT rule does next: accept, continue, return"),
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
    f("icmp-data-src", "icmpDataSrcIp", Cidr("icmpDataSrcLength"), "source prefix inside an ICMP error"),
    f("inv-icmp-data-src", "invIcmpDataSrcIp", Switch, "invert --icmp-data-src"),
    f("icmp-data-dst", "icmpDataDstIp", Cidr("icmpDataDstLength"), "destination prefix inside an ICMP error"),
    f("inv-icmp-data-dst", "invIcmpDataDstIp", Switch, "invert --icmp-data-dst"),
    f("match-nw-dst-rewritten", "matchNwDstRewritten", Switch, "match packets whose destination was DNATed"),
    f("pop-vlan", "popVlan", Switch, "l2_transform: pop the VLAN tag"),
    f("push-vlan", "pushVlan", Int, "l2_transform: push this VLAN id"),
];

const ID: (&str, Col) = ("ID", Col::Key("id"));
const UP: (&str, Col) = ("UP", Col::Key("adminStateUp"));

pub static RESOURCES: &[ResourceSpec] = &[
    ResourceSpec {
        name: "bridge",
        aliases: &["bridges"],
        about: "virtual L2 switches",
        collection: Some("bridges"),
        template: Some("bridgeTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            NAME,
            TENANT,
            ADMIN_UP,
            f(
                "inbound-filter",
                "inboundFilterId",
                Ref("chain"),
                "chain applied to packets entering",
            ),
            f(
                "outbound-filter",
                "outboundFilterId",
                Ref("chain"),
                "chain applied to packets leaving",
            ),
        ],
        columns: &[
            ID,
            ("NAME", Col::Key("name")),
            ("TENANT", Col::Key("tenantId")),
            UP,
            ("IN-FILTER", Col::Key("inboundFilterId")),
            ("OUT-FILTER", Col::Key("outboundFilterId")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "router",
        aliases: &["routers"],
        about: "virtual L3 routers",
        collection: Some("routers"),
        template: Some("routerTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            NAME,
            TENANT,
            ADMIN_UP,
            f(
                "inbound-filter",
                "inboundFilterId",
                Ref("chain"),
                "chain applied to packets entering",
            ),
            f(
                "outbound-filter",
                "outboundFilterId",
                Ref("chain"),
                "chain applied to packets leaving",
            ),
            f(
                "forward-chain",
                "forwardChainId",
                Ref("chain"),
                "chain applied to forwarded packets",
            ),
            f("local-redirect-chain", "localRedirectChainId", Ref("chain"), "local redirect chain"),
            f("load-balancer", "loadBalancerId", Ref("load-balancer"), "attached load balancer"),
            f("as-number", "asNumber", Int, "BGP AS number"),
        ],
        columns: &[
            ID,
            ("NAME", Col::Key("name")),
            ("TENANT", Col::Key("tenantId")),
            UP,
            ("IN-FILTER", Col::Key("inboundFilterId")),
            ("OUT-FILTER", Col::Key("outboundFilterId")),
            ("LOAD-BALANCER", Col::Key("loadBalancerId")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "port",
        aliases: &["ports"],
        about: "bridge and router ports (create with --bridge or --router)",
        collection: Some("ports"),
        template: Some("portTemplate"),
        parents: &[
            ParentSpec {
                flag: "bridge",
                resource: "bridge",
                link: "ports",
                fallback: "ports",
                defaults: &[("type", "Bridge")],
            },
            ParentSpec {
                flag: "router",
                resource: "router",
                link: "ports",
                fallback: "ports",
                defaults: &[("type", "Router")],
            },
        ],
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            f("type", "type", Str, "Bridge or Router (default: from the parent)"),
            ADMIN_UP,
            f(
                "inbound-filter",
                "inboundFilterId",
                Ref("chain"),
                "chain applied to packets entering",
            ),
            f(
                "outbound-filter",
                "outboundFilterId",
                Ref("chain"),
                "chain applied to packets leaving",
            ),
            f("vlan-id", "vlanId", Int, "bridge port: VLAN id"),
            f("port-address", "portAddress", Str, "router port: IP address"),
            f("network", "networkAddress", Cidr("networkLength"), "router port: network ADDR/LEN"),
            f("port-mac", "portMac", Str, "router port: MAC (default: generated)"),
            f("vif-id", "vifId", Str, "VIF id"),
        ],
        columns: &[
            ID,
            ("TYPE", Col::Key("type")),
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
    },
    ResourceSpec {
        name: "route",
        aliases: &["routes"],
        about: "router routes (--router)",
        collection: None,
        template: Some("routeTemplate"),
        parents: &[under("router", "router", "routes", "routes")],
        parent_required: true,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            f("type", "type", Str, "Normal (default), BlackHole, Reject, Local"),
            f(
                "src",
                "srcNetworkAddr",
                Cidr("srcNetworkLength"),
                "source prefix (default 0.0.0.0/0)",
            ),
            f("dst", "dstNetworkAddr", Cidr("dstNetworkLength"), "destination prefix"),
            f("next-hop-port", "nextHopPort", Ref("port"), "egress router port"),
            f("next-hop-gateway", "nextHopGateway", Str, "next-hop IP address"),
            f("weight", "weight", Int, "weight (default 100; lower wins)"),
        ],
        columns: &[
            ID,
            ("TYPE", Col::Key("type")),
            ("SRC", Col::Cidr("srcNetworkAddr", "srcNetworkLength")),
            ("DST", Col::Cidr("dstNetworkAddr", "dstNetworkLength")),
            ("NEXT-HOP-PORT", Col::Key("nextHopPort")),
            ("GATEWAY", Col::Key("nextHopGateway")),
            ("WEIGHT", Col::Key("weight")),
            ("LEARNED", Col::Key("learned")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "chain",
        aliases: &["chains"],
        about: "rule chains (filters)",
        collection: Some("chains"),
        template: Some("chainTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[NAME, TENANT],
        columns: &[ID, ("NAME", Col::Key("name")), ("TENANT", Col::Key("tenantId"))],
        extras: &[],
    },
    ResourceSpec {
        name: "rule",
        aliases: &["rules"],
        about: "chain rules (--chain); every condition has a flag",
        collection: None,
        template: Some("ruleTemplate"),
        parents: &[under("chain", "chain", "rules", "rules")],
        parent_required: true,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: RULE_FIELDS,
        columns: &[
            ("POS", Col::Key("position")),
            ID,
            ("TYPE", Col::Key("type")),
            ("MATCH", Col::Conditions),
            ("JUMP-CHAIN", Col::Key("jumpChainId")),
            ("FLOW-ACTION", Col::Key("flowAction")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "host",
        aliases: &["hosts"],
        about: "hypervisor hosts (registered by agents; update/delete only)",
        collection: Some("hosts"),
        template: Some("hostTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: false,
        fields: &[
            f("flooding-proxy-weight", "floodingProxyWeight", Int, "weight as VTEP flooding proxy"),
            f("container-weight", "containerWeight", Int, "weight for service containers"),
            f("container-limit", "containerLimit", Int, "max service containers (-1: no limit)"),
            f(
                "enforce-container-limit",
                "enforceContainerLimit",
                Bool,
                "enforce --container-limit",
            ),
        ],
        columns: &[
            ID,
            ("NAME", Col::Key("name")),
            ("ALIVE", Col::Key("alive")),
            ("ADDRESSES", Col::Key("addresses")),
        ],
        extras: &[Extra::Interfaces],
    },
    ResourceSpec {
        name: "binding",
        aliases: &["bindings", "host-interface-port"],
        about: "host interface ↔ port bindings (--host)",
        collection: None,
        template: None,
        parents: &[under("host", "host", "ports", "ports")],
        parent_required: true,
        key: Key::Field("portId"),
        writable: true,
        creatable: true,
        fields: &[
            f("port", "portId", Ref("port"), "port to bind"),
            f("interface", "interfaceName", Str, "host interface name"),
        ],
        columns: &[
            ("HOST", Col::Key("hostId")),
            ("PORT", Col::Key("portId")),
            ("INTERFACE", Col::Key("interfaceName")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "tunnel-zone",
        aliases: &["tunnel-zones", "tz"],
        about: "tunnel zones",
        collection: Some("tunnelZones"),
        template: Some("tunnelZoneTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[NAME, f("type", "type", Str, "vxlan (default), gre, vtep")],
        columns: &[ID, ("NAME", Col::Key("name")), ("TYPE", Col::Key("type"))],
        extras: &[],
    },
    ResourceSpec {
        name: "tunnel-zone-member",
        aliases: &["tunnel-zone-members", "tz-member"],
        about: "hosts in a tunnel zone (--tunnel-zone)",
        collection: None,
        template: None,
        parents: &[under("tunnel-zone", "tunnel-zone", "hosts", "hosts")],
        parent_required: true,
        key: Key::Field("hostId"),
        writable: true,
        creatable: true,
        fields: &[
            f("host", "hostId", Ref("host"), "member host"),
            f("ip", "ipAddress", Str, "host's tunnel endpoint address"),
        ],
        columns: &[
            ("TUNNEL-ZONE", Col::Key("tunnelZoneId")),
            ("HOST", Col::Key("hostId")),
            ("IP", Col::Key("ipAddress")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "port-group",
        aliases: &["port-groups"],
        about: "port groups",
        collection: Some("portGroups"),
        template: Some("portGroupTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[NAME, TENANT, f("stateful", "stateful", Bool, "share flow state among members")],
        columns: &[
            ID,
            ("NAME", Col::Key("name")),
            ("TENANT", Col::Key("tenantId")),
            ("STATEFUL", Col::Key("stateful")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "port-group-port",
        aliases: &["port-group-ports", "pg-port"],
        about: "ports in a port group (--port-group)",
        collection: None,
        template: None,
        parents: &[under("port-group", "port-group", "ports", "ports")],
        parent_required: true,
        key: Key::Field("portId"),
        writable: true,
        creatable: true,
        fields: &[f("port", "portId", Ref("port"), "member port")],
        columns: &[("PORT-GROUP", Col::Key("portGroupId")), ("PORT", Col::Key("portId"))],
        extras: &[],
    },
    ResourceSpec {
        name: "ip-addr-group",
        aliases: &["ip-addr-groups"],
        about: "IP address groups",
        collection: Some("ipAddrGroups"),
        template: Some("ipAddrGroupTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[NAME, TENANT],
        columns: &[ID, ("NAME", Col::Key("name"))],
        extras: &[],
    },
    ResourceSpec {
        name: "ip-addr-group-addr",
        aliases: &["ip-addr-group-addrs", "ip-addr"],
        about: "addresses in an IP address group (--ip-addr-group)",
        collection: None,
        template: None,
        parents: &[under("ip-addr-group", "ip-addr-group", "ipAddrs", "ip_addrs")],
        parent_required: true,
        key: Key::Field("addr"),
        writable: true,
        creatable: true,
        fields: &[
            f("addr", "addr", Str, "IP address"),
            f("version", "version", Int, "4 or 6 (default: from the address)"),
        ],
        columns: &[
            ("GROUP", Col::Key("ipAddrGroupId")),
            ("ADDR", Col::Key("addr")),
            ("VERSION", Col::Key("version")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "dhcp-subnet",
        aliases: &["dhcp-subnets", "dhcp"],
        about: "DHCP subnets of a bridge (--bridge); named by ADDR/LEN",
        collection: None,
        template: None,
        parents: &[under("bridge", "bridge", "dhcpSubnets", "dhcp")],
        parent_required: true,
        key: Key::Cidr("subnetPrefix", "subnetLength"),
        writable: true,
        creatable: true,
        fields: &[
            f("subnet", "subnetPrefix", Cidr("subnetLength"), "subnet ADDR/LEN"),
            f("gateway", "defaultGateway", Str, "default gateway offered"),
            f("server", "serverAddr", Str, "DHCP server address"),
            f("dns", "dnsServerAddrs", List, "DNS servers (comma-separated, repeatable)"),
            f("mtu", "interfaceMTU", Int, "interface MTU offered"),
            f("opt121-routes", "opt121Routes", Json, "option 121 routes as JSON array"),
            f("enabled", "enabled", Bool, "serve DHCP on this subnet (default true)"),
        ],
        columns: &[
            ("SUBNET", Col::Cidr("subnetPrefix", "subnetLength")),
            ("GATEWAY", Col::Key("defaultGateway")),
            ("SERVER", Col::Key("serverAddr")),
            ("DNS", Col::Key("dnsServerAddrs")),
            ("MTU", Col::Key("interfaceMTU")),
            ("ENABLED", Col::Key("enabled")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "dhcp-host",
        aliases: &["dhcp-hosts"],
        about: "static DHCP leases (--bridge and --subnet); named by MAC",
        collection: None,
        template: None,
        parents: &[under("subnet", "dhcp-subnet", "hosts", "hosts")],
        parent_required: true,
        key: Key::Field("macAddr"),
        writable: true,
        creatable: true,
        fields: &[
            f("mac", "macAddr", Str, "client MAC"),
            f("ip", "ipAddr", Str, "address to offer"),
            NAME,
            f(
                "extra-opts",
                "extraDhcpOpts",
                Json,
                "extra options as JSON [{\"optName\",\"optValue\"}]",
            ),
        ],
        columns: &[
            ("MAC", Col::Key("macAddr")),
            ("IP", Col::Key("ipAddr")),
            ("NAME", Col::Key("name")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "mac-entry",
        aliases: &["mac-table", "mac-entries"],
        about: "static MAC table entries of a bridge (--bridge); named by MAC",
        collection: None,
        template: None,
        parents: &[under("bridge", "bridge", "macTable", "mac_table")],
        parent_required: true,
        key: Key::Field("macAddr"),
        writable: true,
        creatable: true,
        fields: &[
            f("mac", "macAddr", Str, "MAC address"),
            f("port", "portId", Ref("port"), "bridge port the MAC is behind"),
            f("vlan", "vlanId", Int, "VLAN id"),
        ],
        columns: &[
            ("MAC", Col::Key("macAddr")),
            ("PORT", Col::Key("portId")),
            ("VLAN", Col::Key("vlanId")),
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "arp-entry",
        aliases: &["arp-table", "arp-entries"],
        about: "static ARP entries of a bridge (--bridge); named by IP",
        collection: None,
        template: None,
        parents: &[under("bridge", "bridge", "arpTable", "arp_table")],
        parent_required: true,
        key: Key::Field("ip"),
        writable: true,
        creatable: true,
        fields: &[f("ip", "ip", Str, "IPv4 address"), f("mac", "mac", Str, "MAC address")],
        columns: &[("IP", Col::Key("ip")), ("MAC", Col::Key("mac"))],
        extras: &[],
    },
    ResourceSpec {
        name: "load-balancer",
        aliases: &["load-balancers", "lb"],
        about: "L4 load balancers",
        collection: Some("loadBalancers"),
        template: Some("loadBalancerTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            TENANT,
            ADMIN_UP,
            f("router", "routerId", Ref("router"), "router the load balancer sits on"),
        ],
        columns: &[ID, ("ROUTER", Col::Key("routerId")), UP],
        extras: &[],
    },
    ResourceSpec {
        name: "pool",
        aliases: &["pools"],
        about: "load-balancer pools",
        collection: Some("pools"),
        template: Some("poolTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            f("load-balancer", "loadBalancerId", Ref("load-balancer"), "owning load balancer"),
            f("health-monitor", "healthMonitorId", Ref("health-monitor"), "health monitor"),
            f("protocol", "protocol", Str, "TCP (default)"),
            f("lb-method", "lbMethod", Str, "ROUND_ROBIN (default)"),
            ADMIN_UP,
        ],
        columns: &[
            ID,
            ("LOAD-BALANCER", Col::Key("loadBalancerId")),
            ("HEALTH-MONITOR", Col::Key("healthMonitorId")),
            ("PROTOCOL", Col::Key("protocol")),
            ("METHOD", Col::Key("lbMethod")),
            ("STATUS", Col::Key("status")),
            UP,
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "pool-member",
        aliases: &["pool-members", "member"],
        about: "pool members (backends)",
        collection: Some("poolMembers"),
        template: Some("poolMemberTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            f("pool", "poolId", Ref("pool"), "owning pool"),
            f("address", "address", Str, "backend IPv4 address"),
            f("protocol-port", "protocolPort", Int, "backend port"),
            f("weight", "weight", Int, "weight (default 1)"),
            ADMIN_UP,
        ],
        columns: &[
            ID,
            ("POOL", Col::Key("poolId")),
            ("ADDRESS", Col::Key("address")),
            ("PORT", Col::Key("protocolPort")),
            ("WEIGHT", Col::Key("weight")),
            ("STATUS", Col::Key("status")),
            UP,
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "vip",
        aliases: &["vips"],
        about: "virtual IPs of load balancers",
        collection: Some("vips"),
        template: Some("vipTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            f("load-balancer", "loadBalancerId", Ref("load-balancer"), "owning load balancer"),
            f("pool", "poolId", Ref("pool"), "pool serving this VIP"),
            f("address", "address", Str, "virtual IPv4 address"),
            f("protocol-port", "protocolPort", Int, "virtual port"),
            f("session-persistence", "sessionPersistence", Str, "SOURCE_IP or none"),
            ADMIN_UP,
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
        extras: &[],
    },
    ResourceSpec {
        name: "health-monitor",
        aliases: &["health-monitors", "hm"],
        about: "pool health monitors",
        collection: Some("healthMonitors"),
        template: Some("healthMonitorTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            TENANT,
            f("type", "type", Str, "TCP (default)"),
            f("delay", "delay", Int, "seconds between probes"),
            f("timeout", "timeout", Int, "seconds to wait for an answer"),
            f("max-retries", "maxRetries", Int, "failures before a member is down"),
            ADMIN_UP,
        ],
        columns: &[
            ID,
            ("TYPE", Col::Key("type")),
            ("DELAY", Col::Key("delay")),
            ("TIMEOUT", Col::Key("timeout")),
            ("RETRIES", Col::Key("maxRetries")),
            ("STATUS", Col::Key("status")),
            UP,
        ],
        extras: &[],
    },
    ResourceSpec {
        name: "mirror",
        aliases: &["mirrors"],
        about: "port mirrors (conditions via --conditions JSON)",
        collection: Some("mirrors"),
        template: Some("mirrorTemplate"),
        parents: NO_PARENTS,
        parent_required: false,
        key: Key::Id,
        writable: true,
        creatable: true,
        fields: &[
            TENANT,
            f("to-port", "toPortId", Ref("port"), "port that receives the copies"),
            f("conditions", "conditions", Json, "JSON array of rule conditions (camelCase keys)"),
        ],
        columns: &[ID, ("TO-PORT", Col::Key("toPortId")), ("CONDITIONS", Col::Key("conditions"))],
        extras: &[],
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
            for fs in r.fields {
                assert!(flags.insert(fs.flag), "{}: duplicate flag --{}", r.name, fs.flag);
            }
        }
    }

    #[test]
    fn references_point_at_known_resources() {
        for r in RESOURCES {
            for p in r.parents {
                assert!(find(p.resource).is_some(), "{}: parent {}", r.name, p.resource);
            }
            for fs in r.fields {
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
