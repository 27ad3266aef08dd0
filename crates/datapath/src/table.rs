//! The flow table: an exact-match cache (EMC) in front of a megaflow
//! classifier (tuple-space search), with tag-based invalidation and idle
//! expiry.
//!
//! ```text
//!  key ──hash──> EMC slot ──(key equal, generation equal)──> flow id ─┐
//!                   │ miss                                            │
//!                   v                                                 v
//!  for each subtable (one per distinct mask, busiest first):      flow entry
//!      mask.apply(key) ──> subtable map ──> flow id ──> refill EMC   (actions,
//!                   │ miss in all                                   counters, tags)
//!                   v
//!              upcall (the caller's business)
//! ```
//!
//! Design and invariants:
//! * Flows live in a slab (`Vec<Slot>`) addressed by index. Every slot has a
//!   generation that is bumped when its flow is removed, and EMC entries
//!   remember the generation they saw. So removing a flow (tag invalidation,
//!   expiry, flush) invalidates its EMC entries in O(1) without scanning the
//!   cache; a stale entry is simply a miss.
//! * Each installed flow sits in exactly one subtable (the one of its mask),
//!   under its masked key, and in the tag index under each of its tags. The
//!   flow table is the only writer of all three, in [`FlowTable::insert`] and
//!   [`FlowTable::remove`].
//! * Megaflows installed by a deterministic simulation do not overlap with
//!   different actions (a packet's result depends only on the fields its
//!   mask marks), so the first subtable that matches wins; subtables are
//!   re-sorted by hit count so the busiest is probed first.
//! * Lookup never allocates: the EMC is a fixed array, subtables are hash
//!   maps probed with a stack key.
//! * Hashing uses `foldhash` with a per-table random seed: keys are guest
//!   headers, and a fixed seed would let a guest aim collisions at one bucket.
//!
//! The table is generic over the mask type through [`Wildcard`] so it can be
//! benchmarked and unit-tested on its own; the datapath uses it with
//! `midonet_flow::FlowMask`.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashMap;

use crate::tags::TagIndex;

/// A wildcard mask: turns a packet key into the key of its subtable.
pub trait Wildcard: Copy + Eq + Hash {
    type Key: Copy + Eq + Hash;
    type Masked: Copy + Eq + Hash;
    fn apply(&self, key: &Self::Key) -> Self::Masked;
}

impl Wildcard for midonet_flow::FlowMask {
    type Key = midonet_flow::FlowKey;
    type Masked = midonet_flow::MaskedKey;
    #[inline]
    fn apply(&self, key: &Self::Key) -> Self::Masked {
        midonet_flow::FlowMask::apply(self, key)
    }
}

/// Index of a flow in the table's slab (valid until the flow is removed).
pub type FlowId = u32;

/// What the caller installs.
#[derive(Debug, Clone)]
pub struct FlowSpec<M, A> {
    pub mask: M,
    pub actions: A,
    /// Opaque hashes naming what the decision depended on.
    pub tags: Vec<u64>,
    /// Remove after this long without a packet; 0 = never.
    pub idle_timeout_ms: u64,
}

/// An installed flow.
#[derive(Debug, Clone)]
pub struct FlowEntry<M: Wildcard, A> {
    pub mask: M,
    pub masked: M::Masked,
    pub actions: A,
    pub tags: Box<[u64]>,
    pub idle_timeout_ms: u64,
    pub packets: u64,
    pub bytes: u64,
    /// TCP flags of the packets counted, OR'ed.
    pub tcp_flags: u16,
    /// Milliseconds on the caller's clock.
    pub created_ms: u64,
    pub last_used_ms: u64,
}

struct Slot<M: Wildcard, A> {
    gen: u32,
    flow: Option<FlowEntry<M, A>>,
}

struct Subtable<M: Wildcard> {
    mask: M,
    map: HashMap<M::Masked, FlowId, foldhash::fast::RandomState>,
    hits: u64,
}

#[derive(Clone, Copy)]
struct EmcEntry<K> {
    key: K,
    flow: FlowId,
    gen: u32,
    used: bool,
}

/// Where a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Emc,
    Megaflow,
}

/// Lookup statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub emc_hits: u64,
    pub megaflow_hits: u64,
    pub misses: u64,
    pub flows: usize,
    pub subtables: usize,
    /// Inserts refused because the table was full.
    pub full: u64,
}

/// Errors of [`FlowTable::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    #[error("flow table is full")]
    Full,
}

/// Sizing of a [`FlowTable`].
#[derive(Debug, Clone, Copy)]
pub struct TableConfig {
    /// Maximum number of megaflows.
    pub max_flows: usize,
    /// EMC entries; rounded up to a power of two.
    pub emc_size: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig { max_flows: 65_536, emc_size: 8_192 }
    }
}

/// See the module docs.
pub struct FlowTable<M: Wildcard, A> {
    slots: Vec<Slot<M, A>>,
    free: Vec<FlowId>,
    live: usize,
    subtables: Vec<Subtable<M>>,
    tags: TagIndex,
    emc: Box<[EmcEntry<M::Key>]>,
    emc_mask: usize,
    hasher: foldhash::fast::RandomState,
    cfg: TableConfig,
    stats: TableStats,
    lookups_since_sort: u32,
}

impl<M: Wildcard, A> FlowTable<M, A>
where
    M::Key: Default,
{
    pub fn new(cfg: TableConfig) -> Self {
        let emc_size = cfg.emc_size.max(1).next_power_of_two();
        FlowTable {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            subtables: Vec::new(),
            tags: TagIndex::default(),
            emc: vec![EmcEntry { key: M::Key::default(), flow: 0, gen: 0, used: false }; emc_size]
                .into_boxed_slice(),
            emc_mask: emc_size - 1,
            hasher: foldhash::fast::RandomState::default(),
            cfg,
            stats: TableStats::default(),
            lookups_since_sort: 0,
        }
    }
}

impl<M: Wildcard, A> FlowTable<M, A> {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn stats(&self) -> TableStats {
        TableStats { flows: self.live, subtables: self.subtables.len(), ..self.stats }
    }

    #[inline]
    fn emc_index(&self, key: &M::Key) -> usize {
        (self.hasher.hash_one(key) as usize) & self.emc_mask
    }

    /// Find the flow for `key` (EMC, then megaflows). Does not count
    /// packets; call [`Self::account`] for that.
    #[inline]
    pub fn lookup(&mut self, key: &M::Key) -> Option<(FlowId, Hit)> {
        let ei = self.emc_index(key);
        let e = &self.emc[ei];
        if e.used && e.key == *key {
            if let Some(s) = self.slots.get(e.flow as usize) {
                if s.gen == e.gen && s.flow.is_some() {
                    self.stats.emc_hits += 1;
                    return Some((e.flow, Hit::Emc));
                }
            }
        }
        self.lookups_since_sort = self.lookups_since_sort.wrapping_add(1);
        if self.lookups_since_sort >= 4096 {
            self.lookups_since_sort = 0;
            self.subtables.sort_by_key(|s| std::cmp::Reverse(s.hits));
            for st in &mut self.subtables {
                st.hits /= 2;
            }
        }
        for st in &mut self.subtables {
            let mk = st.mask.apply(key);
            if let Some(&id) = st.map.get(&mk) {
                st.hits += 1;
                self.stats.megaflow_hits += 1;
                let gen = self.slots[id as usize].gen;
                self.emc[ei] = EmcEntry { key: *key, flow: id, gen, used: true };
                return Some((id, Hit::Megaflow));
            }
        }
        self.stats.misses += 1;
        None
    }

    /// Count a packet on a flow.
    #[inline]
    pub fn account(&mut self, id: FlowId, bytes: usize, tcp_flags: u16, now_ms: u64) {
        if let Some(Some(f)) = self.slots.get_mut(id as usize).map(|s| s.flow.as_mut()) {
            f.packets += 1;
            f.bytes += bytes as u64;
            f.tcp_flags |= tcp_flags;
            f.last_used_ms = now_ms;
        }
    }

    pub fn get(&self, id: FlowId) -> Option<&FlowEntry<M, A>> {
        self.slots.get(id as usize).and_then(|s| s.flow.as_ref())
    }

    /// Install a megaflow for `key` under `spec.mask`. If a flow with the
    /// same mask and masked key exists, it is replaced (its counters reset).
    pub fn insert(
        &mut self,
        key: &M::Key,
        spec: FlowSpec<M, A>,
        now_ms: u64,
    ) -> Result<FlowId, InsertError> {
        let masked = spec.mask.apply(key);
        let old = self
            .subtables
            .iter()
            .find(|s| s.mask == spec.mask)
            .and_then(|st| st.map.get(&masked).copied());
        if let Some(old) = old {
            self.remove(old);
        }
        if self.live >= self.cfg.max_flows {
            self.stats.full += 1;
            return Err(InsertError::Full);
        }
        let entry = FlowEntry {
            mask: spec.mask,
            masked,
            actions: spec.actions,
            tags: spec.tags.into_boxed_slice(),
            idle_timeout_ms: spec.idle_timeout_ms,
            packets: 0,
            tcp_flags: 0,
            bytes: 0,
            created_ms: now_ms,
            last_used_ms: now_ms,
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(Slot { gen: 0, flow: None });
                (self.slots.len() - 1) as FlowId
            }
        };
        self.tags.add(id, &entry.tags);
        let sti = match self.subtables.iter().position(|s| s.mask == entry.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable {
                    mask: entry.mask,
                    map: HashMap::with_hasher(foldhash::fast::RandomState::default()),
                    hits: 0,
                });
                self.subtables.len() - 1
            }
        };
        self.subtables[sti].map.insert(masked, id);
        let slot = &mut self.slots[id as usize];
        slot.flow = Some(entry);
        let gen = slot.gen;
        let ei = self.emc_index(key);
        self.emc[ei] = EmcEntry { key: *key, flow: id, gen, used: true };
        self.live += 1;
        Ok(id)
    }

    /// Remove one flow; returns it (with its final counters).
    pub fn remove(&mut self, id: FlowId) -> Option<FlowEntry<M, A>> {
        let slot = self.slots.get_mut(id as usize)?;
        let f = slot.flow.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(id);
        self.live -= 1;
        if let Some(i) = self.subtables.iter().position(|s| s.mask == f.mask) {
            self.subtables[i].map.remove(&f.masked);
            if self.subtables[i].map.is_empty() {
                self.subtables.swap_remove(i);
            }
        }
        self.tags.remove(id, &f.tags);
        Some(f)
    }

    /// Remove exactly the flows carrying any of `tags`; returns how many.
    pub fn invalidate_tags(&mut self, tags: &[u64]) -> usize {
        let mut n = 0;
        for &t in tags {
            let ids: Vec<FlowId> = self.tags.take(t).collect();
            for id in ids {
                if self.remove(id).is_some() {
                    n += 1;
                }
            }
        }
        n
    }

    /// Remove flows idle for longer than their timeout; returns them.
    pub fn expire(&mut self, now_ms: u64) -> Vec<FlowEntry<M, A>> {
        let mut dead = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(f) = &s.flow {
                if f.idle_timeout_ms > 0
                    && now_ms.saturating_sub(f.last_used_ms) >= f.idle_timeout_ms
                {
                    dead.push(i as FlowId);
                }
            }
        }
        dead.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Remove every flow; returns how many.
    pub fn flush(&mut self) -> usize {
        let n = self.live;
        for i in 0..self.slots.len() {
            self.remove(i as FlowId);
        }
        n
    }

    /// Iterate over installed flows.
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &FlowEntry<M, A>)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.flow.as_ref().map(|f| (i as FlowId, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy key/mask pair: the table is generic, and these make the
    /// invariants easy to read. The real FlowMask is tested below too.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    struct K(u32, u32);
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    struct Msk(u32, u32);
    impl Wildcard for Msk {
        type Key = K;
        type Masked = K;
        fn apply(&self, k: &K) -> K {
            K(k.0 & self.0, k.1 & self.1)
        }
    }

    fn spec(mask: Msk, act: &'static str, tags: &[u64], idle: u64) -> FlowSpec<Msk, &'static str> {
        FlowSpec { mask, actions: act, tags: tags.to_vec(), idle_timeout_ms: idle }
    }

    #[test]
    fn miss_then_megaflow_then_emc() {
        let mut t: FlowTable<Msk, &str> = FlowTable::new(TableConfig::default());
        assert_eq!(t.lookup(&K(1, 2)), None);
        let id = t.insert(&K(1, 2), spec(Msk(!0, 0), "a", &[], 0), 0).expect("insert");
        // Same first field, any second field: megaflow hit, then EMC hit.
        assert_eq!(t.lookup(&K(1, 99)), Some((id, Hit::Megaflow)));
        assert_eq!(t.lookup(&K(1, 99)), Some((id, Hit::Emc)));
        assert_eq!(t.lookup(&K(2, 2)), None);
        let s = t.stats();
        assert_eq!((s.emc_hits, s.megaflow_hits, s.misses, s.flows, s.subtables), (1, 1, 2, 1, 1));
    }

    #[test]
    fn invalidate_tags_removes_exactly_tagged_flows_and_their_emc_entries() {
        let mut t: FlowTable<Msk, &str> = FlowTable::new(TableConfig::default());
        let a = t.insert(&K(1, 0), spec(Msk(!0, 0), "a", &[10, 11], 0), 0).expect("a");
        let b = t.insert(&K(2, 0), spec(Msk(!0, 0), "b", &[11], 0), 0).expect("b");
        let c = t.insert(&K(3, 0), spec(Msk(!0, 0), "c", &[12], 0), 0).expect("c");
        assert_eq!(t.lookup(&K(1, 0)).map(|x| x.0), Some(a));
        assert_eq!(t.invalidate_tags(&[11, 99]), 2);
        // EMC still holds K(1,0) -> a, but the generation moved on.
        assert_eq!(t.lookup(&K(1, 0)), None);
        assert_eq!(t.lookup(&K(2, 0)), None);
        assert_eq!(t.lookup(&K(3, 0)).map(|x| x.0), Some(c));
        assert_eq!(t.invalidate_tags(&[10]), 0, "tag 10's only flow is already gone");
        // A new flow reusing a's slot must not be reachable through a's old EMC entry key.
        let d = t.insert(&K(4, 0), spec(Msk(!0, 0), "d", &[], 0), 0).expect("d");
        assert!(d == a || d == b);
        assert_eq!(t.lookup(&K(1, 0)), None);
        assert_eq!(t.get(d).map(|f| f.actions), Some("d"));
    }

    #[test]
    fn idle_expiry_and_accounting() {
        let mut t: FlowTable<Msk, &str> = FlowTable::new(TableConfig::default());
        let a = t.insert(&K(1, 0), spec(Msk(!0, !0), "a", &[], 100), 0).expect("a");
        let _b = t.insert(&K(2, 0), spec(Msk(!0, !0), "b", &[], 0), 0).expect("b");
        // A SYN, then a FIN|ACK: the flags are OR'ed (what the agent reads
        // to close connections).
        t.account(a, 60, 0x002, 50);
        t.account(a, 40, 0x011, 90);
        assert_eq!(t.get(a).map(|f| (f.packets, f.bytes, f.tcp_flags)), Some((2, 100, 0x013)));
        assert!(t.expire(150).is_empty());
        let dead = t.expire(190);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].bytes, 100);
        assert_eq!(t.len(), 1, "the flow without a timeout stays");
    }

    #[test]
    fn capacity_limit_and_replace() {
        let mut t: FlowTable<Msk, &str> = FlowTable::new(TableConfig { max_flows: 2, emc_size: 4 });
        t.insert(&K(1, 0), spec(Msk(!0, 0), "a", &[], 0), 0).expect("a");
        t.insert(&K(2, 0), spec(Msk(!0, 0), "b", &[], 0), 0).expect("b");
        assert_eq!(t.insert(&K(3, 0), spec(Msk(!0, 0), "c", &[], 0), 0), Err(InsertError::Full));
        // Same mask and masked key replaces rather than counting twice.
        let id = t.insert(&K(2, 5), spec(Msk(!0, 0), "b2", &[], 0), 0).expect("replace");
        assert_eq!(t.get(id).map(|f| f.actions), Some("b2"));
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().full, 1);
        assert_eq!(t.flush(), 2);
        assert_eq!(t.stats().subtables, 0);
    }

    #[test]
    fn many_masks_first_match() {
        let mut t: FlowTable<Msk, u32> = FlowTable::new(TableConfig::default());
        for i in 0..10u32 {
            let m = Msk(!0, 1 << i);
            t.insert(
                &K(i, 1 << i),
                FlowSpec { mask: m, actions: i, tags: vec![], idle_timeout_ms: 0 },
                0,
            )
            .expect("insert");
        }
        assert_eq!(t.stats().subtables, 10);
        for i in 0..10u32 {
            let (id, _) = t.lookup(&K(i, (1 << i) | 0xffff_0000)).expect("hit");
            assert_eq!(t.get(id).map(|f| f.actions), Some(i));
        }
    }

    #[test]
    fn real_flow_mask_wildcards_l4_ports() {
        use midonet_flow::{FieldId, FlowKey, FlowMask, InPort};
        let mut k = FlowKey { in_port: InPort::Port(1), ethertype: 0x0800, ..FlowKey::default() };
        k.ipv4_dst = std::net::Ipv4Addr::new(10, 0, 0, 2);
        k.l4_src = 1000;
        let mut m = FlowMask::empty();
        m.mark(FieldId::InPort);
        m.mark(FieldId::Ipv4Dst);
        let mut t: FlowTable<FlowMask, u8> = FlowTable::new(TableConfig::default());
        let id = t
            .insert(&k, FlowSpec { mask: m, actions: 7, tags: vec![1], idle_timeout_ms: 0 }, 0)
            .expect("ins");
        let mut k2 = k;
        k2.l4_src = 2000;
        assert_eq!(t.lookup(&k2), Some((id, Hit::Megaflow)));
        k2.ipv4_dst = std::net::Ipv4Addr::new(10, 0, 0, 3);
        assert_eq!(t.lookup(&k2), None);
    }
}
