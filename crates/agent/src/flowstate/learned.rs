//! Table entries learned here, shared with the tunnel-zone peers directly
//! (issue 12 item 5).
//!
//! A router learns a next hop's MAC from the ARP reply, and a bridge a
//! VM's MAC from its frames, on the host where that reply or frame enters:
//! the host of the answering VM, usually not the host whose packet asked.
//! Through the cluster alone, a routed flow to a next hop never ARPed
//! before cannot start while the cluster is down. So every entry a
//! simulation here learns goes two ways: to the cluster (the desired state
//! the session replays after a reconnect) and, in a flow-state message's
//! learned section, straight to every host sharing a tunnel zone with this
//! one. Learning is rare (a new neighbour, a moved MAC, a stale entry
//! refreshed), so the fan-out is cheap; it also makes a first routed
//! packet wait one underlay round trip instead of a store write and watch.
//!
//! **Whom we believe**: the message is already from a tunnel-zone peer
//! ([`super::receive`]). An entry is installed only when its device is in
//! this host's topology, its MAC is a unicast address, and (MAC entries)
//! its port is on that bridge and is either interior or bound to the
//! sending host: a peer cannot point a bridge's MAC at another host's port
//! or at another bridge's port. The rest is counted
//! (`midonet_agent_flow_state_rejected_total{reason="learned_refused"}`).

use std::net::Ipv4Addr;

use midonet_model::{BridgeId, PortId, RouterId};
use midonet_sim::{MacAddr, StateWrite, Tag};
use midonet_wire::flowstate::{FlowStateRepr, LearnedKindCode, LearnedRepr};
use uuid::Uuid;

use crate::handler::{Egress, Shared, View};

/// The wire form of an entry learned here.
pub fn to_repr(w: &StateWrite) -> LearnedRepr {
    let (kind, device, vlan, port, ip, mac) = match *w {
        StateWrite::Mac { bridge, vlan, mac, port } => (
            LearnedKindCode::Mac,
            bridge.uuid(),
            vlan,
            *port.uuid().as_bytes(),
            Ipv4Addr::UNSPECIFIED,
            mac,
        ),
        StateWrite::RouterArp { router, ip, mac } => {
            (LearnedKindCode::RouterArp, router.uuid(), 0, [0; 16], ip, mac)
        }
        StateWrite::BridgeArp { bridge, ip, mac } => {
            (LearnedKindCode::BridgeArp, bridge.uuid(), 0, [0; 16], ip, mac)
        }
    };
    LearnedRepr { kind, device: *device.as_bytes(), vlan, port, ip, mac: mac.0 }
}

/// The entry a peer sent, if its kind is one this version knows.
pub fn from_repr(r: &LearnedRepr) -> Option<StateWrite> {
    let device = Uuid::from_bytes(r.device);
    let mac = MacAddr(r.mac);
    Some(match r.kind {
        LearnedKindCode::Mac => StateWrite::Mac {
            bridge: BridgeId::from_uuid(device),
            vlan: r.vlan,
            mac,
            port: PortId::from_uuid(Uuid::from_bytes(r.port)),
        },
        LearnedKindCode::RouterArp => {
            StateWrite::RouterArp { router: RouterId::from_uuid(device), ip: r.ip, mac }
        }
        LearnedKindCode::BridgeArp => {
            StateWrite::BridgeArp { bridge: BridgeId::from_uuid(device), ip: r.ip, mac }
        }
        LearnedKindCode::Unknown(_) => return None,
    })
}

/// Whether a peer at `from` may teach this host `w` (module docs).
pub fn acceptable(view: &View, from: Ipv4Addr, w: &StateWrite) -> bool {
    let unicast = |m: MacAddr| m.0[0] & 1 == 0 && m.0 != [0; 6];
    match *w {
        StateWrite::RouterArp { router, ip, mac } => {
            unicast(mac) && !ip.is_unspecified() && view.sim.has_router(router)
        }
        StateWrite::BridgeArp { bridge, ip, mac } => {
            unicast(mac) && !ip.is_unspecified() && view.sim.has_bridge(bridge)
        }
        StateWrite::Mac { bridge, mac, port, .. } => {
            unicast(mac)
                && view.sim.port_device(port) == Some(bridge.cast())
                && (view.sim.is_interior(port)
                    || matches!(view.egress.get(&port), Some(Egress::Remote { dst, .. }) if *dst == from))
        }
    }
}

/// Sends what a simulation here learned to every tunnel-zone peer.
pub fn share(sh: &Shared, view: &View, writes: &[StateWrite]) {
    let Some(rep) = &sh.replicator else { return };
    if writes.is_empty() || view.trusted_peers.is_empty() {
        return;
    }
    let msg = FlowStateRepr {
        sender: *sh.host_id.uuid().as_bytes(),
        learned: writes.iter().map(to_repr).collect(),
        ..FlowStateRepr::default()
    };
    let peers: Vec<Ipv4Addr> = view.trusted_peers.iter().copied().collect();
    let failed = rep.send(&msg, &peers);
    sh.metrics.flow_state_sent.inc_by((peers.len() - failed) as u64);
    if failed > 0 {
        sh.metrics.flow_state_rejected_n("send_failed", failed as u64);
    }
}

/// Installs the entries a peer at `from` learned; returns the tags of the
/// flows they make stale.
pub fn import(sh: &Shared, view: &View, from: Ipv4Addr, entries: &[LearnedRepr]) -> Vec<Tag> {
    let mut stale = Vec::new();
    let (mut unknown, mut refused) = (0u32, 0u32);
    let mut st = sh.state.write();
    for e in entries {
        let Some(w) = from_repr(e) else {
            unknown += 1;
            continue;
        };
        if !acceptable(view, from, &w) {
            refused += 1;
            continue;
        }
        if crate::handler::apply_write(&mut st, &w) {
            stale.push(w.tag());
        }
    }
    drop(st);
    if unknown > 0 {
        sh.metrics.flow_state_entries_rejected("unknown_kind", unknown);
    }
    if refused > 0 {
        sh.metrics.flow_state_entries_rejected("learned_refused", refused);
    }
    stale
}
