//! How long connections and bindings live: the lifetime a binding in use
//! gets, what a FIN or RST does to it, expiry, and refreshes from the flows
//! that carried packets (ARCHITECTURE.md departures 14 and 20).

use std::time::Duration;

use midonet_sim::{nat_tags, Tag};
use midonet_state::{ConnKey, ConnState, NatBinding, NatKey, NatKind};

use super::{allocated_here, Closing, FlowState, Named, CLAIM_PATIENCE, EXPIRY_BUDGET};

impl FlowState {
    /// How long a binding in use lives: its connection's established
    /// timeout (TCP five days, UDP 180 s, ICMP 30 s), refreshed by use.
    pub(super) fn nat_ttl(&self, key: &NatKey) -> Duration {
        match self.closing.get(key) {
            Some(c) => c.ttl,
            None => self.conn.cfg().timeouts.of(key.conn.proto, ConnState::Replied),
        }
    }

    /// A flow's packets included TCP `flags` with FIN or RST: close the
    /// connections and bindings its tags name (module docs). Returns how
    /// many.
    pub fn close<'a>(
        &mut self,
        tags: impl Iterator<Item = &'a u64>,
        flags: u16,
        now: Duration,
    ) -> usize {
        use midonet_flow::key::tcp_flags::{FIN, RST};
        let closing = flags & (FIN | RST);
        if closing == 0 {
            return 0;
        }
        let mut n = 0;
        for tag in tags {
            match self.by_tag.get(tag).copied() {
                Some(Named::Conn(k)) if k.proto == 6 => {
                    n += usize::from(self.conn.packet(&k, closing, now).is_some());
                }
                Some(Named::Nat(k)) if k.conn.proto == 6 => {
                    n += usize::from(self.close_binding(&k, closing, now));
                }
                _ => {}
            }
        }
        n
    }

    /// How long a binding whose connection closed with `flags` (FIN, RST)
    /// lives from its last use. An RST gives the kernel's `tcp_closed`
    /// (10 s) only to a SNAT binding this host allocated. Any other is a
    /// copy (or a DNAT binding, never reused for another connection),
    /// and an RST goes one way: the host that owns the binding may not
    /// have seen it, and its flow (60 s idle) may carry the client's next
    /// connection on the same 5-tuple, whose replies need the copy. Such
    /// a binding gets FIN's `tcp_closing` (120 s), which outlives that
    /// flow; the owner re-sends the binding when it simulates again.
    pub(super) fn closing_ttl(&self, key: &NatKey, flags: u16, now: Duration) -> Duration {
        use midonet_flow::key::tcp_flags::RST;
        let t = self.conn.cfg().timeouts;
        let own = || self.nat.get(key, now).is_some_and(|b| allocated_here(&self.blocks, key, b));
        if flags & RST != 0 && own() {
            t.tcp_closed
        } else {
            t.tcp_closing
        }
    }

    /// Close the binding `key` on `flags` (FIN, RST): its lifetime from
    /// now on is [`Self::closing_ttl`]'s. Returns whether it was live.
    pub(super) fn close_binding(&mut self, key: &NatKey, flags: u16, now: Duration) -> bool {
        let ttl = self.closing_ttl(key, flags, now);
        if !self.nat.shorten(key, now + ttl, now) {
            return false;
        }
        let c = self.closing.entry(*key).or_insert(Closing { ttl, flags: 0 });
        c.ttl = c.ttl.min(ttl);
        c.flags |= flags;
        true
    }

    /// Drop expired connections and bindings (a SNAT binding's port goes
    /// back to its block); returns the tags of their flows.
    pub fn expire(&mut self, now: Duration) -> Vec<Tag> {
        let mut gone = Vec::new();
        self.conn.expire(now, EXPIRY_BUDGET, &mut gone);
        self.kernel_ct_remove(&gone);
        let mut tags: Vec<Tag> = gone
            .iter()
            .map(|k| {
                let t = Tag::conntrack(k);
                self.by_tag.remove(&t.0);
                t
            })
            .collect();
        let mut bindings = Vec::new();
        self.nat.expire(now, EXPIRY_BUDGET, &mut bindings);
        if self.rev_nat.is_some() {
            let gone: Vec<(NatKey, NatBinding)> =
                bindings.iter().map(|e| (e.key, e.binding)).collect();
            self.kernel_clear(&gone);
        }
        for e in bindings {
            self.closing.remove(&e.key);
            for t in nat_tags(&e.key, e.binding) {
                self.by_tag.remove(&t.0);
                tags.push(t);
            }
            if e.key.kind == NatKind::Snat {
                self.blocks.unbind(e.key.conn.tracker, e.binding.ip, e.binding.port, now);
            }
        }
        // A claim unanswered for long was lost with its session.
        let blocks = &mut self.blocks;
        self.claiming.retain(|b, since| {
            let waiting = now.saturating_sub(*since) < CLAIM_PATIENCE;
            if !waiting {
                blocks.unanswered(*b);
            }
            waiting
        });
        self.compact_ports();
        tags
    }

    /// Flows with these tags carried packets: refresh the connections and
    /// bindings they name. Returns how many were refreshed.
    pub fn refresh<'a>(&mut self, tags: impl Iterator<Item = &'a u64>, now: Duration) -> usize {
        let mut n = 0;
        for t in tags {
            match self.by_tag.get(t).copied() {
                Some(Named::Conn(k)) => n += usize::from(self.conn.touch(&k, now)),
                Some(Named::Nat(k)) => {
                    let ttl = self.nat_ttl(&k);
                    n += usize::from(self.nat.touch(&k, now + ttl, now));
                }
                None => {}
            }
        }
        n
    }

    /// Forget connections (all, or those tracked by `tracker`); returns
    /// the tags of their flows.
    pub fn flush(&mut self, tracker: Option<midonet_state::TrackerId>, now: Duration) -> Vec<Tag> {
        let keys: Vec<ConnKey> = self
            .conn
            .iter(now)
            .map(|c| c.key)
            .filter(|k| tracker.is_none_or(|t| k.tracker == t))
            .collect();
        self.kernel_ct_remove(&keys);
        keys.iter()
            .map(|k| {
                self.conn.remove(k);
                let t = Tag::conntrack(k);
                self.by_tag.remove(&t.0);
                t
            })
            .collect()
    }
}
