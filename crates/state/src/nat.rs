//! The NAT binding table (MidoNet's `NatKey` → `NatBinding`, reference
//! §2.10 and §3.1).
//!
//! A binding is stored under its **forward key**: the NAT kind and the
//! packet's [`ConnKey`] *before* translation, at the device whose rule
//! translated it. The reverse key (what a return packet shows, which
//! `rev_snat`/`rev_dnat` look up) is derived from the forward key and the
//! binding ([`NatKey::return_key`]); a reverse index maps it back to the
//! forward key. MidoNet wrote the `REV_*` key as a second entry; here it is
//! the same derivation, kept in one place.
//!
//! ```text
//!  SNAT  fwd  10.0.0.5:4000 > 8.8.8.8:53      binding 203.0.113.1:1100
//!        ret  8.8.8.8:53    > 203.0.113.1:1100  ─rev_snat─> dst := 10.0.0.5:4000
//!  DNAT  fwd  1.2.3.4:5000  > 203.0.113.9:80  binding 10.0.0.7:8080
//!        ret  10.0.0.7:8080 > 1.2.3.4:5000      ─rev_dnat─> src := 203.0.113.9:80
//! ```
//!
//! * **ICMP echo**: the id is the port, in both port fields of a key. The
//!   binding's port is the translated id, so the return key carries it in
//!   both fields too. Unlike MidoNet (reference §2.10, §8.7) the id *is*
//!   rewritten by SNAT, so two inside hosts pinging one destination with
//!   the same id get different outside ids and never collide.
//! * **Sticky DNAT** (`FWD_STICKY_DNAT`): keyed by source IP only (the
//!   source port is zeroed in the forward key and the destination port in
//!   the return key), so every connection of a client lands on one backend.
//! * A return key belongs to at most one binding: inserting a binding whose
//!   return key is taken fails ([`NatError::ReturnKeyInUse`]), which is what
//!   keeps two inside connections from sharing an outside (ip, port,
//!   destination).
//!
//! Expiry times are given by the caller (the connection's conntrack
//! timeout); a full table drops expired entries under the clock hand and
//! otherwise refuses the binding (counted): unlike conntrack, evicting a
//! live binding would silently send a connection's packets to the wrong
//! place.

use std::net::Ipv4Addr;
use std::time::Duration;

use hashbrown::HashMap;
use serde::Serialize;

use crate::key::ConnKey;
use crate::ms;
use crate::table::ExpiringMap;

/// Which translation a binding records.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum NatKind {
    /// Source NAT (`FWD_SNAT`; return: `REV_SNAT`).
    Snat,
    /// Destination NAT (`FWD_DNAT`; return: `REV_DNAT`).
    Dnat,
    /// Destination NAT sticky by source IP (`FWD_STICKY_DNAT`).
    StickyDnat,
}

/// What a packet's address and port are translated to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
pub struct NatBinding {
    pub ip: Ipv4Addr,
    /// Transport port, or ICMP echo id.
    pub port: u16,
}

/// A binding's forward key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
pub struct NatKey {
    pub kind: NatKind,
    /// The packet before translation, at the translating device.
    pub conn: ConnKey,
}

impl NatKey {
    /// The forward key of a packet; sticky DNAT ignores the source port.
    pub fn new(kind: NatKind, mut conn: ConnKey) -> NatKey {
        if kind == NatKind::StickyDnat {
            conn.src_port = 0;
        }
        NatKey { kind, conn }
    }

    /// The key a return packet of this binding shows (module docs).
    pub fn return_key(&self, b: NatBinding) -> ConnKey {
        let c = &self.conn;
        let mut r = match self.kind {
            NatKind::Snat => {
                ConnKey { src: c.dst, src_port: c.dst_port, dst: b.ip, dst_port: b.port, ..*c }
            }
            NatKind::Dnat | NatKind::StickyDnat => {
                ConnKey { src: b.ip, src_port: b.port, dst: c.src, dst_port: c.src_port, ..*c }
            }
        };
        if c.is_icmp() {
            // One echo id per packet: the translated one, both fields.
            r.src_port = b.port;
            r.dst_port = b.port;
        }
        r
    }

    /// What reverse translation restores on a return packet: the original
    /// destination for SNAT (the inside host), the original source for DNAT
    /// (the address the client spoke to).
    pub fn return_binding(&self) -> NatBinding {
        match self.kind {
            NatKind::Snat => NatBinding { ip: self.conn.src, port: self.conn.src_port },
            NatKind::Dnat | NatKind::StickyDnat => {
                NatBinding { ip: self.conn.dst, port: self.conn.dst_port }
            }
        }
    }
}

/// Normalise a return packet's key for a lookup of kind `kind`.
fn return_lookup_key(kind: NatKind, mut k: ConnKey) -> (NatKind, ConnKey) {
    if kind == NatKind::StickyDnat && !k.is_icmp() {
        k.dst_port = 0;
    }
    (kind, k)
}

/// Why a binding was not stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum NatError {
    /// The forward key is bound to something else already.
    #[error("forward key already bound elsewhere")]
    Bound(NatBinding),
    /// Another binding's return traffic would look the same.
    #[error("return key in use by another binding")]
    ReturnKeyInUse,
    /// The table is full of live bindings.
    #[error("nat table full")]
    Full,
}

/// Counters; all monotonic but `entries`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct NatStats {
    pub entries: u64,
    pub inserted: u64,
    pub expired: u64,
    pub removed: u64,
    /// Bindings refused because the table was full.
    pub insert_failed: u64,
    /// Bindings refused because their return key was taken.
    pub conflicts: u64,
}

/// A live binding, as listed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct NatEntry {
    pub key: NatKey,
    pub binding: NatBinding,
    pub expires: Duration,
}

/// The NAT binding table (module docs).
#[derive(Debug, Clone)]
pub struct NatTable {
    fwd: ExpiringMap<NatKey, NatBinding>,
    rev: HashMap<(NatKind, ConnKey), NatKey, foldhash::fast::FixedState>,
    max_entries: usize,
    stats: NatStats,
}

impl NatTable {
    /// An empty table of at most `max_entries` bindings; `hash_seed` as for
    /// [`ConnTable::new`](crate::ConnTable::new).
    pub fn new(max_entries: usize, hash_seed: u64) -> Self {
        NatTable {
            fwd: ExpiringMap::new(hash_seed),
            rev: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(!hash_seed)),
            max_entries,
            stats: NatStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.fwd.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fwd.len() == 0
    }

    pub fn stats(&self) -> NatStats {
        NatStats { entries: self.fwd.len() as u64, ..self.stats }
    }

    /// The binding of a forward key (`snat`/`dnat` rules: reuse it).
    pub fn get(&self, key: &NatKey, now: Duration) -> Option<NatBinding> {
        self.fwd.get(key).filter(|s| s.expires_ms > ms(now)).map(|s| s.val)
    }

    /// Reverse translation for a return packet with key `ret`
    /// (`rev_snat`/`rev_dnat` rules): what to restore, if a live binding of
    /// `kind` produced it.
    pub fn reverse(&self, kind: NatKind, ret: &ConnKey, now: Duration) -> Option<NatBinding> {
        let fwd = self.rev.get(&return_lookup_key(kind, *ret))?;
        self.get(fwd, now).map(|_| fwd.return_binding())
    }

    /// The live binding whose return traffic shows `ret`, as its forward
    /// key and binding: what [`reverse`](Self::reverse) restores is
    /// `key.return_binding()`. A reverse lookup that also needs to know
    /// which binding it used (to tag the flow with it, to refresh it) asks
    /// this.
    pub fn reverse_entry(
        &self,
        kind: NatKind,
        ret: &ConnKey,
        now: Duration,
    ) -> Option<(NatKey, NatBinding)> {
        let fwd = self.rev.get(&return_lookup_key(kind, *ret))?;
        self.get(fwd, now).map(|b| (*fwd, b))
    }

    /// Whether a live binding's return traffic would show `ret`: a SNAT
    /// allocator asks before handing out (ip, port) towards a destination.
    pub fn return_key_in_use(&self, kind: NatKind, ret: &ConnKey, now: Duration) -> bool {
        self.reverse(kind, ret, now).is_some()
    }

    /// Store `key` → `binding` until `expires`, or refresh it if already
    /// stored with the same binding.
    pub fn insert(
        &mut self,
        key: NatKey,
        binding: NatBinding,
        expires: Duration,
        now: Duration,
    ) -> Result<(), NatError> {
        let now_ms = ms(now);
        if let Some(i) = self.fwd.find(&key) {
            let s = self.fwd.slot(i);
            if s.expires_ms > now_ms && s.val != binding {
                return Err(NatError::Bound(s.val));
            }
            // Expired (or the same): drop it and store afresh.
            let old = self.fwd.remove_at(i);
            self.unindex(&old.key, old.val);
        }
        let rk = return_lookup_key(key.kind, key.return_key(binding));
        if let Some(other) = self.rev.get(&rk).copied() {
            if self.get(&other, now).is_some() {
                self.stats.conflicts += 1;
                return Err(NatError::ReturnKeyInUse);
            }
            // A dead binding still indexed: clear it out.
            if let Some(old) = self.fwd.remove(&other) {
                self.unindex(&old.key, old.val);
                self.stats.expired += 1;
            }
        }
        if self.fwd.len() >= self.max_entries {
            let mut dead = Vec::new();
            self.fwd.sweep(now_ms, crate::conntrack::EVICTION_SAMPLE, |s| dead.push(s));
            self.stats.expired += dead.len() as u64;
            for s in dead {
                self.unindex(&s.key, s.val);
            }
            if self.fwd.len() >= self.max_entries {
                self.stats.insert_failed += 1;
                return Err(NatError::Full);
            }
        }
        self.fwd.insert_new(key, binding, ms(expires));
        self.rev.insert(rk, key);
        self.stats.inserted += 1;
        Ok(())
    }

    /// Store a binding a peer sent. The host that allocated it is its
    /// authority: a live binding here that disagrees (the same forward key
    /// bound elsewhere, or another key holding its return key) is an older
    /// copy whose expiry ran differently here, and goes, unless `own` says
    /// it is this host's own allocation (then the peer's is refused,
    /// `Bound` or `ReturnKeyInUse`). The displaced bindings are appended to
    /// `gone` (the caller invalidates their flows).
    pub fn import(
        &mut self,
        key: NatKey,
        binding: NatBinding,
        expires: Duration,
        now: Duration,
        own: impl Fn(&NatKey, NatBinding) -> bool,
        gone: &mut Vec<(NatKey, NatBinding)>,
    ) -> Result<(), NatError> {
        let rk = return_lookup_key(key.kind, key.return_key(binding));
        let mut displaced = Vec::new();
        if let Some(b) = self.get(&key, now).filter(|b| *b != binding) {
            if own(&key, b) {
                return Err(NatError::Bound(b));
            }
            displaced.push((key, b));
        }
        if let Some(other) = self.rev.get(&rk).copied().filter(|o| *o != key) {
            if let Some(b) = self.get(&other, now) {
                if own(&other, b) {
                    return Err(NatError::ReturnKeyInUse);
                }
                displaced.push((other, b));
            }
        }
        for (k, _) in &displaced {
            self.remove(k);
        }
        gone.extend(displaced);
        self.insert(key, binding, expires, now)
    }

    fn unindex(&mut self, key: &NatKey, b: NatBinding) {
        let rk = return_lookup_key(key.kind, key.return_key(b));
        if self.rev.get(&rk) == Some(key) {
            self.rev.remove(&rk);
        }
    }

    /// Push a binding's expiry to `expires` (datapath activity). Returns
    /// whether it is live.
    pub fn touch(&mut self, key: &NatKey, expires: Duration, now: Duration) -> bool {
        match self.fwd.get_mut(key) {
            Some(s) if s.expires_ms > ms(now) => {
                s.expires_ms = s.expires_ms.max(ms(expires));
                true
            }
            _ => false,
        }
    }

    /// Bring a live binding's expiry forward to `expires` if that is
    /// sooner (its connection is closing). Returns whether it is live.
    pub fn shorten(&mut self, key: &NatKey, expires: Duration, now: Duration) -> bool {
        match self.fwd.get_mut(key) {
            Some(s) if s.expires_ms > ms(now) => {
                s.expires_ms = s.expires_ms.min(ms(expires));
                true
            }
            _ => false,
        }
    }

    /// Forget a binding.
    pub fn remove(&mut self, key: &NatKey) -> Option<NatBinding> {
        let s = self.fwd.remove(key)?;
        self.unindex(&s.key, s.val);
        self.stats.removed += 1;
        Some(s.val)
    }

    /// Visit up to `budget` bindings from the clock hand and drop the
    /// expired ones, appending them to `gone` (the caller invalidates their
    /// flows and returns SNAT ports to the lease view). Returns how many.
    pub fn expire(&mut self, now: Duration, budget: usize, gone: &mut Vec<NatEntry>) -> usize {
        let mut dead = Vec::new();
        let n = self.fwd.sweep(ms(now), budget, |s| dead.push(s));
        for s in dead {
            self.unindex(&s.key, s.val);
            gone.push(NatEntry {
                key: s.key,
                binding: s.val,
                expires: Duration::from_millis(s.expires_ms),
            });
        }
        self.stats.expired += n as u64;
        n
    }

    /// Every live binding; order unspecified.
    pub fn iter(&self, now: Duration) -> impl Iterator<Item = NatEntry> + '_ {
        let now = ms(now);
        self.fwd.iter().filter(move |s| s.expires_ms > now).map(|s| NatEntry {
            key: s.key,
            binding: s.val,
            expires: Duration::from_millis(s.expires_ms),
        })
    }

    /// Heap bytes held (entries and both indexes).
    pub fn heap_size(&self) -> usize {
        self.fwd.heap_size() + self.rev.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::key::{proto, TrackerId};

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn ip(d: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, d)
    }

    fn conn(proto: u8, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> ConnKey {
        ConnKey {
            src: src.0,
            src_port: src.1,
            dst: dst.0,
            dst_port: dst.1,
            proto,
            tracker: TrackerId(Uuid::from_u128(9)),
        }
    }

    #[test]
    fn snat_reverse_restores_the_inside_host() {
        let mut t = NatTable::new(16, 1);
        let out = Ipv4Addr::new(8, 8, 8, 8);
        let k = NatKey::new(NatKind::Snat, conn(proto::UDP, (ip(5), 4000), (out, 53)));
        let b = NatBinding { ip: Ipv4Addr::new(203, 0, 113, 1), port: 1100 };
        t.insert(k, b, S(30), S(0)).expect("room");
        assert_eq!(t.get(&k, S(1)), Some(b));
        // The reply as it arrives from outside.
        let ret = conn(proto::UDP, (out, 53), (b.ip, 1100));
        assert_eq!(ret, k.return_key(b));
        assert_eq!(
            t.reverse(NatKind::Snat, &ret, S(1)),
            Some(NatBinding { ip: ip(5), port: 4000 })
        );
        assert_eq!(t.reverse(NatKind::Dnat, &ret, S(1)), None, "kinds do not mix");
        assert_eq!(t.reverse_entry(NatKind::Snat, &ret, S(1)), Some((k, b)));
        // Another destination port: not this binding's traffic.
        let other = conn(proto::UDP, (out, 54), (b.ip, 1100));
        assert_eq!(t.reverse(NatKind::Snat, &other, S(1)), None);
        assert_eq!(t.reverse(NatKind::Snat, &ret, S(30)), None, "expired");
    }

    #[test]
    fn dnat_and_sticky_dnat() {
        let mut t = NatTable::new(16, 1);
        let client = (Ipv4Addr::new(1, 2, 3, 4), 5000);
        let vip = (Ipv4Addr::new(203, 0, 113, 9), 80);
        let k = NatKey::new(NatKind::Dnat, conn(proto::TCP, client, vip));
        let b = NatBinding { ip: ip(7), port: 8080 };
        t.insert(k, b, S(30), S(0)).expect("room");
        let ret = conn(proto::TCP, (ip(7), 8080), client);
        assert_eq!(t.reverse(NatKind::Dnat, &ret, S(1)), Some(NatBinding { ip: vip.0, port: 80 }));

        // Sticky: any source port of the client maps to the one backend.
        let s = NatKey::new(NatKind::StickyDnat, conn(proto::TCP, client, vip));
        assert_eq!(s.conn.src_port, 0);
        t.insert(s, b, S(30), S(0)).expect("room");
        let again = NatKey::new(NatKind::StickyDnat, conn(proto::TCP, (client.0, 6000), vip));
        assert_eq!(t.get(&again, S(1)), Some(b));
        let ret2 = conn(proto::TCP, (ip(7), 8080), (client.0, 6000));
        assert_eq!(
            t.reverse(NatKind::StickyDnat, &ret2, S(1)),
            Some(NatBinding { ip: vip.0, port: 80 })
        );
    }

    #[test]
    fn icmp_echo_ids_are_translated_and_do_not_collide() {
        let mut t = NatTable::new(16, 1);
        let dst = Ipv4Addr::new(8, 8, 8, 8);
        let pub_ip = Ipv4Addr::new(203, 0, 113, 1);
        // Two inside hosts ping the same destination with the same id.
        let a = NatKey::new(NatKind::Snat, conn(proto::ICMP, (ip(1), 77), (dst, 77)));
        let b = NatKey::new(NatKind::Snat, conn(proto::ICMP, (ip(2), 77), (dst, 77)));
        let ba = NatBinding { ip: pub_ip, port: 77 };
        t.insert(a, ba, S(30), S(0)).expect("room");
        // Same outside id for the second: refused, its reply would be ambiguous.
        assert_eq!(t.insert(b, ba, S(30), S(0)), Err(NatError::ReturnKeyInUse));
        let bb = NatBinding { ip: pub_ip, port: 78 };
        t.insert(b, bb, S(30), S(0)).expect("another id");
        // Echo replies carry the translated id in both "port" fields.
        let reply_b = conn(proto::ICMP, (dst, 78), (pub_ip, 78));
        assert_eq!(b.return_key(bb), reply_b);
        assert_eq!(
            t.reverse(NatKind::Snat, &reply_b, S(1)),
            Some(NatBinding { ip: ip(2), port: 77 })
        );
        let reply_a = conn(proto::ICMP, (dst, 77), (pub_ip, 77));
        assert_eq!(
            t.reverse(NatKind::Snat, &reply_a, S(1)),
            Some(NatBinding { ip: ip(1), port: 77 })
        );
        assert_eq!(t.stats().conflicts, 1);
    }

    #[test]
    fn rebinding_expiry_removal_and_full_table() {
        let mut t = NatTable::new(2, 1);
        let out = (Ipv4Addr::new(8, 8, 8, 8), 53);
        let k = NatKey::new(NatKind::Snat, conn(proto::UDP, (ip(1), 1), out));
        let b = NatBinding { ip: ip(100), port: 2000 };
        t.insert(k, b, S(30), S(0)).expect("room");
        let b2 = NatBinding { port: 2001, ..b };
        assert_eq!(t.insert(k, b2, S(30), S(1)), Err(NatError::Bound(b)));
        assert!(t.touch(&k, S(60), S(29)));
        assert_eq!(t.get(&k, S(59)), Some(b));
        // Expired: the key may be bound afresh, and the old return key is free.
        t.insert(k, b2, S(100), S(60)).expect("rebinding an expired key");
        assert!(!t.return_key_in_use(NatKind::Snat, &k.return_key(b), S(61)));
        assert!(t.return_key_in_use(NatKind::Snat, &k.return_key(b2), S(61)));

        let k2 = NatKey::new(NatKind::Snat, conn(proto::UDP, (ip(2), 1), out));
        t.insert(k2, NatBinding { port: 2002, ..b }, S(100), S(60)).expect("room");
        let k3 = NatKey::new(NatKind::Snat, conn(proto::UDP, (ip(3), 1), out));
        assert_eq!(
            t.insert(k3, NatBinding { port: 2003, ..b }, S(100), S(61)),
            Err(NatError::Full)
        );
        assert_eq!(t.remove(&k2), Some(NatBinding { port: 2002, ..b }));
        t.insert(k3, NatBinding { port: 2003, ..b }, S(100), S(61)).expect("room again");
        let mut gone = Vec::new();
        assert_eq!(t.expire(S(100), 10, &mut gone), 2);
        assert!(t.is_empty());
        assert!(!t.return_key_in_use(
            NatKind::Snat,
            &k3.return_key(NatBinding { port: 2003, ..b }),
            S(0)
        ));
    }

    proptest! {
        /// Every stored binding reverse-translates exactly its own return
        /// traffic, whatever the mix of kinds, protocols and removals.
        #[test]
        fn reverse_is_the_inverse_of_forward(
            entries in proptest::collection::vec(
                (0u8..3, prop_oneof![Just(proto::TCP), Just(proto::UDP), Just(proto::ICMP)],
                 0u8..4, 0u16..4, 0u8..3, 0u16..3, 0u16..6, any::<bool>()),
                1..40),
        ) {
            let mut t = NatTable::new(1000, 7);
            let mut live: Vec<(NatKey, NatBinding)> = Vec::new();
            for (kind, p, s, sp, d, dp, bp, remove) in entries {
                let kind = [NatKind::Snat, NatKind::Dnat, NatKind::StickyDnat][usize::from(kind)];
                let (sp, dp) = if p == proto::ICMP { (sp, sp) } else { (sp, dp) };
                let k = NatKey::new(kind, conn(p, (ip(s), sp), (ip(50 + d), dp)));
                let b = NatBinding { ip: ip(200), port: 1000 + bp };
                match t.insert(k, b, S(100), S(0)) {
                    Ok(()) => {
                        live.retain(|(x, _)| *x != k);
                        live.push((k, b));
                    }
                    Err(NatError::Bound(old)) => {
                        prop_assert!(live.iter().any(|&(x, y)| x == k && y == old));
                    }
                    Err(NatError::ReturnKeyInUse) => {
                        let rk = return_lookup_key(kind, k.return_key(b));
                        prop_assert!(live.iter().any(|&(x, y)| x.kind == kind
                            && return_lookup_key(kind, x.return_key(y)) == rk));
                    }
                    Err(NatError::Full) => prop_assert!(false, "not full"),
                }
                if remove && !live.is_empty() {
                    let (x, _) = live.remove(0);
                    prop_assert!(t.remove(&x).is_some());
                }
                prop_assert_eq!(t.len(), live.len());
                for &(x, y) in &live {
                    prop_assert_eq!(t.get(&x, S(1)), Some(y));
                    let ret = x.return_key(y);
                    prop_assert_eq!(t.reverse(x.kind, &ret, S(1)), Some(x.return_binding()));
                }
            }
        }
    }
}
