//! The datapath's reverse-NAT table, kept equal to this host's bindings
//! (issue 8; `midonet_datapath::RevNatTable`).
//!
//! A reply to a NATed connection whose flow is split at the reverse rule
//! (`midonet_sim::Split`) is translated by the datapath from its own
//! table, so that one megaflow carries every connection's replies and a
//! new connection's reply does not miss. That table must say what the
//! agent's [`NatTable`](midonet_state::NatTable) says:
//!
//! * **written** for every binding a simulation made or used here and
//!   every binding a peer's message installed (a `local` mark on those
//!   this host allocated, which a peer's message may not replace: the
//!   agent's own rule);
//! * **taken back** where the agent refused a peer's binding (the
//!   datapath may have written it from the message already) and where a
//!   binding expired or was replaced;
//! * **read back** each refresh round: a binding whose replies the
//!   datapath translated since the last round is refreshed as a flow's
//!   activity refreshes it, and a reply's FIN or RST closes it, since no
//!   per-connection flow reports those for it any more.
//!
//! Only TCP and UDP bindings of SNAT and DNAT are in it (what a split
//! covers); the rest need no entry.
//!
//! Its conntrack table ([`midonet_datapath::CtKey`]), which a split flow
//! whose second half reads conntrack checks, is kept equal to this host's
//! TCP and UDP connections the same way: written when a connection is
//! tracked or imported (afresh when it opens again), taken out when it
//! expires, is flushed or was refused, and read back each round for the
//! replies that used it (refreshed, and closed by their FIN or RST).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use midonet_datapath::{CtKey, RevNatEntry, RevNatKey, RevNatKind, RevNatTable};
use midonet_state::{ConnKey, ConnState, NatBinding, NatKey, NatKind, TrackerId};

use super::{allocated_here, FlowState};

/// Keeping the datapath's tables equal to the flow state (module docs).
impl FlowState {
    /// From now on, keep the datapath's reverse-NAT table equal to the
    /// bindings here (module docs), starting with those held already.
    pub fn set_rev_nat(&mut self, table: Arc<dyn RevNatTable>, now: Duration) {
        let all: Vec<(NatKey, NatBinding)> =
            self.nat.iter(now).map(|e| (e.key, e.binding)).collect();
        let conns: Vec<ConnKey> = self.conn.iter(now).map(|c| c.key).collect();
        // An earlier agent's connections this one no longer tracks (they
        // expired while it was down) must not let replies in.
        let held: std::collections::HashSet<CtKey> = conns.iter().filter_map(ct_entry).collect();
        let stale: Vec<CtKey> = table.ct_keys().into_iter().filter(|k| !held.contains(k)).collect();
        if !stale.is_empty() {
            tracing::info!(n = stale.len(), "connections an earlier agent left in the datapath");
            if let Err(e) = table.ct_remove(&stale) {
                tracing::warn!(error = %e, "clearing the datapath's conntrack table");
            }
        }
        self.rev_nat = Some(table);
        self.kernel_write(&all);
        self.kernel_ct_insert(&conns, false);
    }

    /// Puts these connections into the datapath's conntrack table: `fresh`,
    /// replacing what it holds of them, else where it holds nothing.
    pub(super) fn kernel_ct_insert(&self, conns: &[ConnKey], fresh: bool) {
        let Some(t) = &self.rev_nat else { return };
        let keys: Vec<_> = conns.iter().filter_map(ct_entry).collect();
        if !keys.is_empty() {
            if let Err(e) = t.ct_insert(&keys, fresh) {
                tracing::warn!(error = %e, "writing the datapath's conntrack table");
            }
        }
    }

    /// Takes these connections out of the datapath's conntrack table.
    pub(super) fn kernel_ct_remove(&self, conns: &[ConnKey]) {
        let Some(t) = &self.rev_nat else { return };
        let keys: Vec<_> = conns.iter().filter_map(ct_entry).collect();
        if !keys.is_empty() {
            if let Err(e) = t.ct_remove(&keys) {
                tracing::warn!(error = %e, "clearing the datapath's conntrack table");
            }
        }
    }

    /// Whether the datapath translates replies itself.
    pub fn has_rev_nat(&self) -> bool {
        self.rev_nat.is_some()
    }

    /// Writes these bindings into the datapath's table.
    pub(super) fn kernel_write(&self, bindings: &[(NatKey, NatBinding)]) {
        let Some(t) = &self.rev_nat else { return };
        let entries: Vec<RevNatEntry> = bindings
            .iter()
            .filter_map(|(k, b)| entry(k, *b, allocated_here(&self.blocks, k, *b)))
            .collect();
        if !entries.is_empty() {
            if let Err(e) = t.upsert(&entries) {
                tracing::warn!(error = %e, "writing the datapath's reverse-NAT table");
            }
        }
    }

    /// Takes these bindings out of the datapath's table where it still
    /// holds exactly them.
    pub(super) fn kernel_clear(&self, bindings: &[(NatKey, NatBinding)]) {
        let Some(t) = &self.rev_nat else { return };
        let entries: Vec<RevNatEntry> =
            bindings.iter().filter_map(|(k, b)| entry(k, *b, false)).collect();
        if !entries.is_empty() {
            if let Err(e) = t.remove_exact(&entries) {
                tracing::warn!(error = %e, "clearing the datapath's reverse-NAT table");
            }
        }
    }

    /// Bindings whose replies the datapath translated itself in the last
    /// `window` (module docs): closed if those replies carried a FIN or
    /// RST this host has not acted on yet, and kept alive for their
    /// (closing) lifetime by that use, as a flow's use keeps them. The
    /// table's flags are cumulative (only a peer's message, which writes
    /// the entry afresh, clears them), so what was acted on is read from
    /// `closing`: a FIN once, an RST once. Returns how many were
    /// refreshed and how many closed.
    pub fn refresh_from_kernel(&mut self, window: Duration, now: Duration) -> (usize, usize) {
        use midonet_flow::key::tcp_flags::{FIN, RST};
        let Some(t) = self.rev_nat.clone() else { return (0, 0) };
        let since = t.now().saturating_sub(window);
        let (mut refreshed, mut closed) = (0, 0);
        for (e, flags) in t.used_since(since) {
            let (key, b) = binding(&e);
            if self.nat.get(&key, now) != Some(b) {
                continue;
            }
            let acted = self.closing.get(&key).map_or(0, |c| c.flags);
            let closing = flags & (FIN | RST) & !acted;
            if closing != 0 && key.conn.proto == 6 {
                closed += usize::from(self.close_binding(&key, closing, now));
                continue;
            }
            // Used, and nothing new: alive for its lifetime from now (a
            // closed one's too, while its replies keep coming).
            let ttl = self.nat_ttl(&key);
            refreshed += usize::from(self.nat.touch(&key, now + ttl, now));
        }
        // Connections whose replies took a second half through the
        // datapath's conntrack check: a reply each (its FIN or RST closes
        // the connection; a closed one stays closed, and is kept for its
        // closed lifetime from its last use).
        for (k, flags) in t.ct_used_since(since) {
            let key = ct_conn(&k);
            let before = self.conn.lookup(&key, now).map(|(c, _)| c.state);
            let Some((c, _)) = self.conn.packet(&key.reversed(), flags & (FIN | RST), now) else {
                continue;
            };
            refreshed += 1;
            let ended = matches!(c.state, ConnState::Closing | ConnState::Closed);
            closed += usize::from(ended && before != Some(c.state));
        }
        (refreshed, closed)
    }
}

/// The datapath's entry for binding `b` of `key`, if it has one.
pub fn entry(key: &NatKey, b: NatBinding, local: bool) -> Option<RevNatEntry> {
    let kind = match key.kind {
        NatKind::Snat => RevNatKind::Snat,
        NatKind::Dnat => RevNatKind::Dnat,
        NatKind::StickyDnat => return None,
    };
    let c = &key.conn;
    if c.proto != 6 && c.proto != 17 {
        return None;
    }
    let ret = key.return_key(b);
    let restore = key.return_binding();
    Some(RevNatEntry {
        key: RevNatKey {
            tracker: *c.tracker.0.as_bytes(),
            kind,
            proto: c.proto,
            src: ret.src,
            dst: ret.dst,
            src_port: ret.src_port,
            dst_port: ret.dst_port,
        },
        ip: restore.ip,
        port: restore.port,
        local,
    })
}

/// The datapath's conntrack entry for connection `k`, if it has one (TCP
/// and UDP).
pub fn ct_entry(k: &ConnKey) -> Option<CtKey> {
    (k.proto == 6 || k.proto == 17).then(|| CtKey {
        tracker: *k.tracker.0.as_bytes(),
        proto: k.proto,
        src: k.src,
        dst: k.dst,
        src_port: k.src_port,
        dst_port: k.dst_port,
    })
}

/// The connection a conntrack entry stands for (the inverse of
/// [`ct_entry`]).
pub fn ct_conn(k: &CtKey) -> ConnKey {
    ConnKey {
        src: k.src,
        dst: k.dst,
        src_port: k.src_port,
        dst_port: k.dst_port,
        proto: k.proto,
        tracker: TrackerId(uuid::Uuid::from_bytes(k.tracker)),
    }
}

/// The binding an entry of the datapath's table stands for: its forward
/// key and what that translates to (the inverse of [`entry`]).
pub fn binding(e: &RevNatEntry) -> (NatKey, NatBinding) {
    let k = &e.key;
    let tracker = TrackerId(uuid::Uuid::from_bytes(k.tracker));
    let conn = |src: Ipv4Addr, src_port, dst: Ipv4Addr, dst_port| ConnKey {
        src,
        dst,
        src_port,
        dst_port,
        proto: k.proto,
        tracker,
    };
    match k.kind {
        // Reply: server -> NAT address; forward: inside -> server.
        RevNatKind::Snat => (
            NatKey::new(NatKind::Snat, conn(e.ip, e.port, k.src, k.src_port)),
            NatBinding { ip: k.dst, port: k.dst_port },
        ),
        // Reply: backend -> client; forward: client -> the address spoken to.
        RevNatKind::Dnat => (
            NatKey::new(NatKind::Dnat, conn(k.dst, k.dst_port, e.ip, e.port)),
            NatBinding { ip: k.src, port: k.src_port },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(proto: u8) -> ConnKey {
        ConnKey {
            src: Ipv4Addr::new(10, 0, 0, 5),
            dst: Ipv4Addr::new(198, 51, 100, 7),
            src_port: 40000,
            dst_port: 80,
            proto,
            tracker: TrackerId(uuid::Uuid::from_u128(0x1234)),
        }
    }

    #[test]
    fn an_entry_is_the_reply_as_it_arrives_and_what_the_reverse_rule_restores() {
        let k = NatKey::new(NatKind::Snat, conn(6));
        let b = NatBinding { ip: Ipv4Addr::new(203, 0, 113, 1), port: 61000 };
        let e = entry(&k, b, true).expect("tcp snat");
        assert_eq!(
            (e.key.src, e.key.src_port, e.key.dst, e.key.dst_port),
            (Ipv4Addr::new(198, 51, 100, 7), 80, Ipv4Addr::new(203, 0, 113, 1), 61000)
        );
        assert_eq!((e.ip, e.port, e.local), (Ipv4Addr::new(10, 0, 0, 5), 40000, true));
        // The same as the agent's own reverse lookup.
        let ret = k.return_key(b);
        assert_eq!((ret.src, ret.dst), (e.key.src, e.key.dst));
    }

    #[test]
    fn entries_map_back_to_their_bindings_for_both_kinds_and_protocols() {
        for kind in [NatKind::Snat, NatKind::Dnat] {
            for proto in [6, 17] {
                let k = NatKey::new(kind, conn(proto));
                let b = NatBinding { ip: Ipv4Addr::new(192, 0, 2, 9), port: 8080 };
                let e = entry(&k, b, false).expect("covered");
                assert_eq!(binding(&e), (k, b), "{kind:?} {proto}");
            }
        }
    }

    #[test]
    fn tcp_and_udp_connections_have_conntrack_entries_and_map_back() {
        for proto in [6, 17] {
            let c = conn(proto);
            let e = ct_entry(&c).expect("covered");
            assert_eq!((e.src, e.dst, e.src_port, e.dst_port), (c.src, c.dst, 40000, 80));
            assert_eq!(ct_conn(&e), c);
        }
        assert!(ct_entry(&conn(1)).is_none(), "ICMP splits never");
    }

    #[test]
    fn icmp_and_sticky_dnat_have_no_entry() {
        let b = NatBinding { ip: Ipv4Addr::new(192, 0, 2, 9), port: 7 };
        assert!(entry(&NatKey::new(NatKind::Snat, conn(1)), b, false).is_none());
        assert!(entry(&NatKey::new(NatKind::StickyDnat, conn(6)), b, false).is_none());
    }
}
