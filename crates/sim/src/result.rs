//! What a simulation returns: [`SimResult`].
//!
//! The result is built into a caller-owned value ([`simulate_into`]
//! clears and refills it), so a worker that reuses one `SimResult` does not
//! allocate per packet on the common paths: the vectors keep their capacity.
//!
//! [`simulate_into`]: crate::simulate_into

use std::fmt;
use std::net::Ipv4Addr;

use midonet_model::{
    ChainId, DeviceId, MirrorId, PoolId, PoolMemberId, PortId, RouteId, RouterId, RuleId, VipId,
};
use serde::{Serialize, Serializer};

use midonet_state::{BlockKey, ConnKey, NatBinding, NatKey, NatKind, TrackerId};

use crate::state::StateWrite;
use crate::tag::Tag;
use crate::{Action, Actions, FlowKey, FlowMask, MacAddr};

pub(crate) fn ser_mac<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(m)
}

/// How long the datapath should keep a drop flow (MidoNet's temporary and permanent drops).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropLifetime {
    /// An error or transient condition: 5 s, then simulate again.
    Temporary,
    /// A configured decision (rule, admin state): the normal flow lifetime.
    Normal,
}

impl DropLifetime {
    /// The hard timeout the agent should install the drop flow with.
    pub fn timeout(self) -> std::time::Duration {
        match self {
            DropLifetime::Temporary => std::time::Duration::from_secs(5),
            DropLifetime::Normal => std::time::Duration::from_secs(60),
        }
    }
}

macro_rules! drop_reasons {
    ($($v:ident => $s:literal, $life:ident;)+) => {
        /// Why a packet was dropped. Small and `Copy`, so the agent can count
        /// drops per reason (`as_str` is the metric label).
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum DropReason { $($v),+ }
        impl DropReason {
            /// Every variant, for registering counters up front.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v),+];
            /// A stable snake_case label.
            pub fn as_str(self) -> &'static str {
                match self { $(DropReason::$v => $s),+ }
            }
            /// The drop-flow lifetime this reason implies.
            pub fn lifetime(self) -> DropLifetime {
                match self { $(DropReason::$v => DropLifetime::$life),+ }
            }
        }
    };
}

drop_reasons! {
    UnknownPort => "unknown_port", Temporary;
    UnknownDevice => "unknown_device", Temporary;
    PortAdminDown => "port_admin_down", Normal;
    DeviceAdminDown => "device_admin_down", Normal;
    PortUnplugged => "port_unplugged", Temporary;
    LoopGuard => "loop_guard", Temporary;
    Budget => "sim_budget_exhausted", Temporary;
    RuleDrop => "rule_drop", Normal;
    RuleReject => "rule_reject", Normal;
    // SNAT needs a port block this host does not hold: claim
    // `SimResult::need_block` and simulate again (see `engine::nat`).
    NatNeedBlock => "nat_need_block", Temporary;
    // Every address and port of every target is taken.
    NatExhausted => "nat_exhausted", Temporary;
    // The NAT table is full of live bindings.
    NatTableFull => "nat_table_full", Temporary;
    // A VIP whose pool has no member up and enabled (the client gets an
    // ICMP port unreachable, rate limited).
    LbNoMember => "lb_no_member", Temporary;
    // UDP to a VIP's address and port (VIPs are TCP only, as MidoNet).
    LbNotTcp => "lb_not_tcp", Normal;
    RedirectTargetDown => "redirect_target_down", Temporary;
    MulticastSource => "multicast_source", Normal;
    Hairpin => "hairpin", Temporary;
    VlanMismatch => "vlan_mismatch", Normal;
    RouterVlanTagged => "router_vlan_tagged", Normal;
    RouterNotIpv4 => "router_not_ipv4", Normal;
    RouterL2Multicast => "router_l2_multicast", Normal;
    RouterWrongDstMac => "router_wrong_dst_mac", Normal;
    RouterPortNoAddress => "router_port_no_address", Temporary;
    ArpNotForUs => "arp_not_for_us", Normal;
    NoRoute => "no_route", Temporary;
    BlackholeRoute => "blackhole_route", Temporary;
    RejectRoute => "reject_route", Temporary;
    BadRoute => "bad_route", Temporary;
    TtlExceeded => "ttl_exceeded", Temporary;
    LocalNotHandled => "local_not_handled", Normal;
    ArpFailed => "arp_failed", Temporary;
    GatewayOutsideSubnet => "gateway_outside_subnet", Temporary;
    NoOutput => "no_output", Temporary;
}

/// Something the simulation refused to follow and worked around, without
/// dropping the packet: the agent counts these by reason (`as_str` is the
/// metric label), once per simulation that met one, not per packet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    /// A MAC-table entry (learned state or seeded) of a bridge names a port
    /// that is not one of that bridge's ports, or no known port: the entry
    /// is ignored and the MAC treated as unknown (see `engine::bridge`).
    MacEntryForeignPort,
}

impl Anomaly {
    /// Every variant, for registering counters up front.
    pub const ALL: &'static [Anomaly] = &[Anomaly::MacEntryForeignPort];

    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Anomaly::MacEntryForeignPort => "mac_entry_foreign_port",
        }
    }
}

/// A connection the simulation asks the caller to track.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct ConnWrite {
    /// The forward key: the packet as it leaves, at the egress port's device.
    pub key: ConnKey,
    /// The first packet's TCP flags (a SYN starts the short SYN-sent
    /// timeout). Informational: not marked in the mask, since it only sets
    /// the state's timeout, never the forwarding decision.
    pub tcp_flags: u16,
}

/// A NAT binding the simulation created or used (see `engine::nat`): the
/// caller replicates new ones to its peers and persists them, and refreshes
/// the ones its flows keep using.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct NatWrite {
    /// The forward key: the packet before translation, at the device whose
    /// rule translated it.
    pub key: NatKey,
    pub binding: NatBinding,
    /// Created by this simulation (as opposed to found in the table).
    pub created: bool,
    /// Found by a reverse lookup: the packet is the connection's reply,
    /// restored (`rev_snat`/`rev_dnat`, a load balancer's return). Such a
    /// use is news to no peer: MidoNet replicates what a simulation adds,
    /// never what it looked up.
    pub reverse: bool,
}

impl NatWrite {
    /// The tags a change of this binding (stored, replaced, expired,
    /// removed) invalidates: flows that used it in either direction, and
    /// reverse lookups that missed it ([`Tag::nat`], [`Tag::nat_return`]).
    pub fn tags(&self) -> [Tag; 2] {
        nat_tags(&self.key, self.binding)
    }
}

/// The tags a change of binding `key` → `binding` invalidates (see
/// [`NatWrite::tags`]); for the agent's expiry and replication paths.
pub fn nat_tags(key: &NatKey, binding: NatBinding) -> [Tag; 2] {
    [Tag::nat(key), Tag::nat_return(key.kind, &key.return_key(binding))]
}

/// The outcome of a simulation.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// Install a drop flow for `lifetime`.
    Drop { reason: DropReason, lifetime: DropLifetime },
    /// Execute [`SimResult::actions`] (at least one `ToPort`).
    Forward,
    /// The agent answered (ARP reply, echo reply, learned state): nothing to
    /// forward, see [`SimResult::generated`].
    Consumed,
    /// The next hop's MAC is unknown; an ARP request is in
    /// [`SimResult::generated`]. Park the packet and simulate it again when
    /// the ARP entry `(router, ip)` is written (its tag is in the result).
    ArpPending { router: RouterId, ip: Ipv4Addr },
}

/// A virtual action: header rewrites (set-field, push/pop VLAN) interleaved
/// with outputs to exterior ports. The agent turns `ToPort` into a local
/// output or a VXLAN tunnel to the port's host; rewrites apply to every
/// output after them, so a flood with per-port rewrites is one list.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SimAction {
    /// A rewrite (never an `Output`/`Tunnel`/`Userspace`).
    Rewrite(Action),
    /// Emit on this exterior port.
    ToPort(PortId),
}

impl fmt::Display for SimAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimAction::Rewrite(a) => write!(f, "{a}"),
            SimAction::ToPort(p) => write!(f, "to_port({p})"),
        }
    }
}

impl Serialize for SimAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a generated packet goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(tag = "kind", content = "port", rename_all = "snake_case")]
pub enum GenTarget {
    /// Emit as is on this exterior port.
    Emit(PortId),
    /// Simulate it as if it entered at this port (a router's reply leaving
    /// through an interior port continues on the peer's device).
    Ingress(PortId),
}

/// Why a packet was generated.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GenKind {
    ArpReply,
    ArpRequest,
    IcmpEchoReply,
    /// An ICMP error of this type and code.
    IcmpError {
        icmp_type: u8,
        code: u8,
    },
    /// A DHCP OFFER, ACK or NAK (see [`crate::dhcp`]).
    DhcpReply,
}

/// A packet the simulation generated (an answer, a request, an error).
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct GeneratedPacket {
    pub kind: GenKind,
    pub target: GenTarget,
    /// The whole Ethernet frame, checksums filled in.
    #[serde(serialize_with = "ser_hex")]
    pub frame: Vec<u8>,
}

fn ser_hex<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use fmt::Write;
    let mut out = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(out, "{x:02x}");
    }
    s.serialize_str(&out)
}

/// A device as named in a trace.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Bridge,
    Router,
}

/// Where a chain ran.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    PortIn,
    PortOut,
    BridgeIn,
    BridgeOut,
    RouterIn,
    /// A router's local redirect chain (`localRedirectChainId`), before
    /// its inbound chain.
    RouterLocalRedirect,
    RouterOut,
    /// A router's forward chain (`forwardChainId`): routed packets, after
    /// the route lookup and before the outbound chain.
    RouterForward,
    /// A router's outbound chain on a packet it generated.
    RouterGenerated,
    /// A chain reached by `jump`.
    Jump,
}

/// Where a mirror copied the packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorPoint {
    PortPreIn,
    PortPostIn,
    PortPreOut,
    PortPostOut,
    DeviceIn,
    DeviceOut,
}

/// One step of a trace. Built only when tracing is on.
#[derive(Clone, PartialEq, Debug, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum TraceStep {
    PortIngress {
        port: PortId,
    },
    PortEgress {
        port: PortId,
    },
    Device {
        kind: DeviceKind,
        id: DeviceId,
        name: String,
    },
    Chain {
        hook: Hook,
        chain: ChainId,
        name: String,
    },
    Rule {
        chain: ChainId,
        index: usize,
        rule: RuleId,
        action: String,
    },
    ChainResult {
        chain: ChainId,
        result: String,
    },
    Mirror {
        point: MirrorPoint,
        mirror: MirrorId,
        to: PortId,
    },
    VlanPush {
        vlan: u16,
    },
    VlanPop {
        vlan: u16,
    },
    MacLearn {
        vlan: u16,
        #[serde(serialize_with = "ser_mac")]
        mac: MacAddr,
        port: PortId,
    },
    MacLookup {
        vlan: u16,
        #[serde(serialize_with = "ser_mac")]
        mac: MacAddr,
        port: Option<PortId>,
    },
    /// A MAC-table entry naming a port that is not on this bridge: ignored.
    MacEntryIgnored {
        vlan: u16,
        #[serde(serialize_with = "ser_mac")]
        mac: MacAddr,
        port: PortId,
    },
    Flood {
        ports: Vec<PortId>,
    },
    ArpAnswered {
        ip: Ipv4Addr,
        #[serde(serialize_with = "ser_mac")]
        mac: MacAddr,
    },
    ArpLearn {
        ip: Ipv4Addr,
        #[serde(serialize_with = "ser_mac")]
        mac: MacAddr,
    },
    Route {
        route: Option<RouteId>,
        kind: String,
        dst: String,
        port: Option<PortId>,
        gateway: Option<Ipv4Addr>,
        candidates: usize,
    },
    NoRoute,
    Ttl {
        from: u8,
        to: u8,
    },
    NextHop {
        ip: Ipv4Addr,
        #[serde(serialize_with = "ser_mac")]
        mac: MacAddr,
        via: String,
    },
    ArpMiss {
        ip: Ipv4Addr,
    },
    Generated {
        kind: GenKind,
        target: GenTarget,
    },
    IcmpSuppressed {
        why: String,
    },
    Rewrite {
        what: String,
    },
    Redirect {
        port: PortId,
        ingress: bool,
    },
    /// The DHCP server's view of a BOOTREQUEST (answered or passed on).
    Dhcp {
        what: String,
    },
    /// A rule asked about conntrack: the packet's key at the ingress
    /// device, and whether it is return traffic.
    Conntrack {
        key: ConnKey,
        ret: bool,
    },
    /// A forward flow records its connection as it leaves.
    ConntrackRecord {
        key: ConnKey,
    },
    /// A dynamic NAT rule: the key it looked up (the packet at the rule's
    /// device; for an ICMP error, the embedded packet reversed), whether it
    /// is a reverse rule, and what came of it.
    Nat {
        kind: NatKind,
        reverse: bool,
        key: ConnKey,
        result: String,
    },
    /// The router's load balancer took a packet to a VIP: the pool, the
    /// member chosen (none: no member could take it) and how.
    LoadBalancer {
        vip: VipId,
        pool: PoolId,
        member: Option<PoolMemberId>,
        how: String,
    },
    Output {
        port: PortId,
    },
    Drop {
        reason: DropReason,
    },
    Consumed,
}

impl fmt::Display for TraceStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TraceStep::*;
        match self {
            PortIngress { port } => write!(f, "ingress port {port}"),
            PortEgress { port } => write!(f, "egress port {port}"),
            Device { kind, id, name } => {
                let k = match kind {
                    DeviceKind::Bridge => "bridge",
                    DeviceKind::Router => "router",
                };
                write!(f, "enter {k} {id} \"{name}\"")
            }
            Chain { hook, chain, name } => write!(f, "chain {chain} \"{name}\" at {hook:?}"),
            Rule { chain: _, index, rule, action } => {
                write!(f, "  rule #{index} {rule} matched: {action}")
            }
            ChainResult { chain: _, result } => write!(f, "  chain result: {result}"),
            Mirror { point, mirror, to } => {
                write!(f, "mirror {mirror} at {point:?} copies to port {to}")
            }
            VlanPush { vlan } => write!(f, "push vlan {vlan}"),
            VlanPop { vlan } => write!(f, "pop vlan {vlan}"),
            MacLearn { vlan, mac, port } => write!(f, "learn {mac} vlan {vlan} on port {port}"),
            MacLookup { vlan, mac, port } => match port {
                Some(p) => write!(f, "mac {mac} vlan {vlan} is on port {p}"),
                None => write!(f, "mac {mac} vlan {vlan} unknown"),
            },
            MacEntryIgnored { vlan, mac, port } => {
                write!(
                    f,
                    "mac {mac} vlan {vlan}: entry names port {port}, not on this bridge: ignored"
                )
            }
            Flood { ports } => {
                write!(f, "flood to {} port(s)", ports.len())?;
                for p in ports {
                    write!(f, " {p}")?;
                }
                Ok(())
            }
            ArpAnswered { ip, mac } => write!(f, "answer arp: {ip} is at {mac}"),
            ArpLearn { ip, mac } => write!(f, "learn arp: {ip} is at {mac}"),
            Route { route, kind, dst, port, gateway, candidates } => {
                write!(f, "route {dst} {kind}")?;
                if let Some(r) = route {
                    write!(f, " (route {r})")?;
                }
                if let Some(p) = port {
                    write!(f, " via port {p}")?;
                }
                if let Some(g) = gateway {
                    write!(f, " gw {g}")?;
                }
                if *candidates > 1 {
                    write!(f, " [ecmp over {candidates}]")?;
                }
                Ok(())
            }
            NoRoute => write!(f, "no route"),
            Ttl { from, to } => write!(f, "ttl {from} -> {to}"),
            NextHop { ip, mac, via } => write!(f, "next hop {ip} is {mac} ({via})"),
            ArpMiss { ip } => write!(f, "arp miss for {ip}: request sent, packet pending"),
            Generated { kind, target } => write!(f, "generate {kind:?} -> {target:?}"),
            IcmpSuppressed { why } => write!(f, "icmp error suppressed: {why}"),
            Rewrite { what } => write!(f, "rewrite {what}"),
            Redirect { port, ingress } => {
                write!(f, "redirect to port {port} {}", if *ingress { "ingress" } else { "egress" })
            }
            Dhcp { what } => write!(f, "dhcp: {what}"),
            Conntrack { key, ret } => {
                let dir = if *ret { "return flow" } else { "forward flow" };
                write!(f, "conntrack {key}: {dir}")
            }
            ConntrackRecord { key } => write!(f, "conntrack: track {key}"),
            Nat { kind, reverse, key, result } => {
                let k = match kind {
                    NatKind::Snat => "snat",
                    NatKind::Dnat => "dnat",
                    NatKind::StickyDnat => "sticky dnat",
                };
                let r = if *reverse { "rev_" } else { "" };
                write!(f, "{r}{k} {key}: {result}")
            }
            LoadBalancer { vip, pool, member, how } => {
                write!(f, "load balancer: vip {vip} pool {pool}: ")?;
                match member {
                    Some(m) => write!(f, "member {m} ({how})"),
                    None => write!(f, "{how}"),
                }
            }
            Output { port } => write!(f, "output to exterior port {port}"),
            Drop { reason } => write!(f, "drop: {}", reason.as_str()),
            Consumed => write!(f, "consumed"),
        }
    }
}

/// A flow split at a reverse NAT (module docs of `engine::nat`): the first
/// half matches `mask` over [`SimResult::key`] and reverse-translates from
/// the datapath's table; the second half is the rest of the result.
///
/// With a split, [`SimResult::mask`] is the second half's mask (over
/// [`Split::key`], in-port marked), [`SimResult::actions`] its actions
/// (rewrites relative to [`Split::key`]) and [`SimResult::tags`] its tags.
/// The second half continues the first: it is only right for packets the
/// first half sent (its in-port must name that first half), since what the
/// simulation read before the split is in the first half's mask only.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Split {
    /// `Snat` (a `rev_snat` restored the destination) or `Dnat`
    /// (a `rev_dnat` restored the source); never `StickyDnat`.
    pub kind: NatKind,
    /// The device whose chain holds the reverse rule: the lookup's tracker.
    pub tracker: TrackerId,
    /// A conntrack lookup after the translation found this connection (its
    /// forward key, at the ingress port's device: the reply as it entered,
    /// reversed). The datapath takes the second half only for a packet
    /// whose own connection its table tracks, at this key's tracker; else
    /// the packet misses. `None`: no lookup after the translation.
    pub conntrack: Option<ConnKey>,
    /// The first half's mask: what was read before the reverse lookup,
    /// plus ethertype, IP protocol and fragment type (what the datapath's
    /// lookup itself needs: IPv4 TCP or UDP, not a later fragment).
    pub mask: FlowMask,
    /// The first half's tags: those met before the reverse lookup (sorted,
    /// no duplicates).
    pub tags: Vec<Tag>,
    /// The key right after the translation, in-port unchanged: the second
    /// half's key. It differs from [`SimResult::key`] in the restored fields
    /// only.
    pub key: FlowKey,
    /// The rewrites the translation made (`SetIpv4Dst`, `SetL4Dst` for
    /// `Snat`; `SetIpv4Src`, `SetL4Src` for `Dnat`). `restore` followed by
    /// [`SimResult::actions`] does to a packet what the unsplit flow does
    /// ([`SimResult::unsplit_actions`]).
    pub restore: Actions,
}

/// Everything a simulation produces. Reuse one per worker with
/// [`simulate_into`](crate::simulate_into).
#[derive(Clone, Debug)]
pub struct SimResult {
    pub decision: Decision,
    /// Rewrites and `ToPort`s, in order (meaningful for `Forward`).
    pub actions: Vec<SimAction>,
    /// The fields the decision read: the megaflow's mask.
    pub mask: FlowMask,
    /// The original key (what the mask applies to).
    pub key: FlowKey,
    /// Everything the decision depended on, sorted, no duplicates.
    pub tags: Vec<Tag>,
    pub generated: Vec<GeneratedPacket>,
    pub state_writes: Vec<StateWrite>,
    /// Connections to track: forward flows that asked about conntrack,
    /// with the key they leave by (see `engine::conntrack`). The caller
    /// applies them to its conntrack table and replicates them.
    pub conntrack: Vec<ConnWrite>,
    /// NAT bindings created or used, forward and reverse (see
    /// `engine::nat`); none from mirror copies. Created ones are already in
    /// the caller's table (the [`ConntrackView`](crate::ConntrackView)
    /// stored them); the caller replicates and persists them.
    pub nat: Vec<NatWrite>,
    /// SNAT needs this port block, which the view does not hold: the
    /// decision is a temporary [`DropReason::NatNeedBlock`]; claim the
    /// block, then simulate the packet again. The flow is tagged
    /// [`Tag::snat_block`] of it.
    pub need_block: Option<BlockKey>,
    /// Empty unless tracing was asked for.
    pub trace: Vec<TraceStep>,
    /// The decision read something a megaflow cannot match (the addresses
    /// inside an ICMP error): the agent must not install a wildcard flow,
    /// only handle this packet (or install an exact-match, short flow).
    pub uncacheable: bool,
    /// What the simulation refused to follow (see [`Anomaly`]), in the
    /// order met; empty on every normal path.
    pub anomalies: Vec<Anomaly>,
    /// The flow splits at a reverse NAT (see [`Split`]): only when
    /// [`SimInput::split_reverse_nat`](crate::SimInput::split_reverse_nat)
    /// asked for it and every condition of `engine::nat` held. `mask`,
    /// `actions` and `tags` are then the second half's.
    pub split: Option<Split>,
}

impl Default for SimResult {
    fn default() -> Self {
        SimResult {
            decision: Decision::Drop {
                reason: DropReason::NoOutput,
                lifetime: DropLifetime::Temporary,
            },
            actions: Vec::new(),
            mask: FlowMask::empty(),
            key: FlowKey::default(),
            tags: Vec::new(),
            generated: Vec::new(),
            state_writes: Vec::new(),
            conntrack: Vec::new(),
            nat: Vec::new(),
            need_block: None,
            trace: Vec::new(),
            uncacheable: false,
            anomalies: Vec::new(),
            split: None,
        }
    }
}

impl SimResult {
    pub(crate) fn clear(&mut self, key: FlowKey) {
        self.decision =
            Decision::Drop { reason: DropReason::NoOutput, lifetime: DropLifetime::Temporary };
        self.actions.clear();
        self.mask = FlowMask::empty();
        self.key = key;
        self.tags.clear();
        self.generated.clear();
        self.state_writes.clear();
        self.conntrack.clear();
        self.nat.clear();
        self.need_block = None;
        self.trace.clear();
        self.uncacheable = false;
        self.anomalies.clear();
        self.split = None;
    }

    /// The actions of the flow unsplit: [`Split::restore`] then
    /// [`actions`](Self::actions) (just the actions when there is no
    /// split). They do to every packet what the unsplit simulation's
    /// actions do, though not necessarily in the same order (the restored
    /// fields' set-actions come first).
    pub fn unsplit_actions(&self) -> Vec<SimAction> {
        let restore = self.split.iter().flat_map(|s| s.restore.iter().copied());
        restore.map(SimAction::Rewrite).chain(self.actions.iter().copied()).collect()
    }

    /// The `ToPort` targets, in order.
    pub fn out_ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.actions.iter().filter_map(|a| match a {
            SimAction::ToPort(p) => Some(*p),
            SimAction::Rewrite(_) => None,
        })
    }

    /// A readable multi-line report: trace, decision, match, actions,
    /// generated packets and state writes (what golden files and the CLI show).
    pub fn render(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        for (i, t) in self.trace.iter().enumerate() {
            let _ = writeln!(s, "{:>3}. {t}", i + 1);
        }
        let _ = writeln!(s, "decision: {}", self.decision);
        match &self.split {
            None => {
                let _ = writeln!(s, "match: {}", self.key.display_masked(&self.mask));
            }
            Some(sp) => {
                let kind = match sp.kind {
                    NatKind::Snat => "rev_snat",
                    NatKind::Dnat => "rev_dnat",
                    NatKind::StickyDnat => "rev_sticky_dnat",
                };
                let restore: Vec<String> = sp.restore.iter().map(ToString::to_string).collect();
                let _ = writeln!(s, "split: {kind} at {}", sp.tracker.0);
                let _ = writeln!(s, "first half match: {}", self.key.display_masked(&sp.mask));
                let _ = writeln!(s, "restore: [{}]", restore.join(", "));
                let _ = writeln!(s, "first half tags: {}", sp.tags.len());
                let _ = writeln!(s, "match: {}", sp.key.display_masked(&self.mask));
            }
        }
        let acts: Vec<String> = self.actions.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "actions: [{}]", acts.join(", "));
        for g in &self.generated {
            let _ =
                writeln!(s, "generated: {:?} -> {:?} ({} bytes)", g.kind, g.target, g.frame.len());
        }
        for w in &self.state_writes {
            let _ = writeln!(s, "state write: {w:?}");
        }
        for c in &self.conntrack {
            let _ = writeln!(s, "conntrack: track {}", c.key);
        }
        for n in &self.nat {
            let how = if n.created { "new" } else { "used" };
            let _ = writeln!(
                s,
                "nat: {:?} {} -> {}:{} ({how})",
                n.key.kind, n.key.conn, n.binding.ip, n.binding.port
            );
        }
        if let Some(b) = &self.need_block {
            let _ = writeln!(s, "need block: {} {} #{}", b.device, b.ip, b.block);
        }
        if self.uncacheable {
            let _ = writeln!(s, "uncacheable: true");
        }
        for a in &self.anomalies {
            let _ = writeln!(s, "anomaly: {}", a.as_str());
        }
        let _ = writeln!(s, "tags: {}", self.tags.len());
        s
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Drop { reason, lifetime } => {
                write!(f, "drop ({}, {lifetime:?})", reason.as_str())
            }
            Decision::Forward => f.write_str("forward"),
            Decision::Consumed => f.write_str("consumed"),
            Decision::ArpPending { router, ip } => write!(f, "arp pending (router {router}, {ip})"),
        }
    }
}
