//! Which flows carry a tag: the index both flow tables (the userspace
//! provider's [`crate::table::FlowTable`] and the eBPF provider's copy of
//! its flows) keep so that invalidating a tag removes exactly its flows.
//!
//! Most tags are shared by very many flows (a router's or a bridge's tag
//! is on every flow that crossed it, a dozen such tags on each), so adding
//! or removing one flow must not walk the others: each tag holds a set,
//! and a flow's install and removal cost one set operation per tag of its
//! own, whatever the table holds. (A list per tag, searched on every
//! install and removal, made both linear in the number of flows sharing a
//! tag: 107 µs per install and removal among 20,000 connections' flows,
//! `cargo bench -p midonet-datapath --bench classifier -- install_and_remove`.)
//!
//! The set takes the shape of its members ([`Members`]). Flow ids are slab
//! indices handed out lowest-free-first, so they are dense: a tag on most
//! flows keeps a bitmap (one bit per id up to its highest member: an add
//! or a removal touches one word, and 32,768 flows fit in 4 KB that stays
//! in cache), a connection's own tag keeps its one or two members inline
//! (nothing allocated per connection), and a tag on more flows spread
//! over many ids keeps a hash set. The two big shapes are boxed, so a
//! tag's entry in the index is 24 bytes and the two new tags of every
//! new connection touch as little of it as they can (the churn bench:
//! 0.62 µs per flow with the shapes inline, 0.43 µs boxed). A bitmap is kept only
//! while it costs at most 8 bytes per member (about what a hash set
//! costs), so a table of a million flows with many middling tags does not
//! grow a 128 KB bitmap per tag.

use std::collections::{HashMap, HashSet};

use crate::FlowId;

type Hasher = foldhash::fast::RandomState;

/// Members kept inline, in the tag's entry, up to this many.
const FEW: usize = 3;

/// A bigger set back to the inline shape at this many members.
const DEMOTE: usize = FEW - 1;

/// The flows carrying one tag.
enum Members {
    /// At most [`FEW`], the first `len` of the array, unordered, each
    /// once (inline: a connection's own tag allocates nothing).
    Few { len: u8, ids: [FlowId; FEW] },
    /// Many, spread thin over the ids. (Boxed on purpose: the set's own
    /// header is 32 bytes, and every tag's entry would carry it.)
    #[allow(clippy::box_collection)]
    Sparse(Box<HashSet<FlowId, Hasher>>),
    /// Many and dense.
    Dense(Box<Bitmap>),
}

/// Bit `id` of the words; `len` bits set.
struct Bitmap {
    words: Vec<u64>,
    len: usize,
}

/// Words a bitmap holding `max` needs.
fn words_for(max: FlowId) -> usize {
    max as usize / 64 + 1
}

/// Whether a bitmap of `words` words may hold `len` members: at most one
/// word (8 bytes) per member.
fn dense_enough(words: usize, len: usize) -> bool {
    words <= len
}

impl Members {
    fn len(&self) -> usize {
        match self {
            Members::Few { len, .. } => usize::from(*len),
            Members::Sparse(s) => s.len(),
            Members::Dense(d) => d.len,
        }
    }

    fn ids(&self) -> Box<dyn Iterator<Item = FlowId> + '_> {
        match self {
            Members::Few { len, ids } => Box::new(ids[..usize::from(*len)].iter().copied()),
            Members::Sparse(s) => Box::new(s.iter().copied()),
            Members::Dense(d) => Box::new(bits(&d.words)),
        }
    }

    fn into_ids(self) -> Vec<FlowId> {
        match self {
            Members::Few { len, ids } => ids[..usize::from(len)].to_vec(),
            Members::Sparse(s) => s.iter().copied().collect(),
            Members::Dense(d) => bits(&d.words).collect(),
        }
    }

    /// A set of `ids` (distinct) in the shape that suits them.
    fn of(ids: Vec<FlowId>) -> Members {
        if ids.len() <= FEW {
            let mut few = [0; FEW];
            few[..ids.len()].copy_from_slice(&ids);
            return Members::Few { len: ids.len() as u8, ids: few };
        }
        let max = ids.iter().copied().max().unwrap_or(0);
        if dense_enough(words_for(max), ids.len()) {
            let mut words = vec![0u64; words_for(max)];
            for &id in &ids {
                words[id as usize / 64] |= 1 << (id % 64);
            }
            Members::Dense(Box::new(Bitmap { len: ids.len(), words }))
        } else {
            let mut s = HashSet::with_capacity_and_hasher(ids.len(), Hasher::default());
            s.extend(ids);
            Members::Sparse(Box::new(s))
        }
    }

    fn insert(&mut self, id: FlowId) {
        match self {
            Members::Few { len, ids } => {
                let n = usize::from(*len);
                if ids[..n].contains(&id) {
                    return;
                }
                if n < FEW {
                    ids[n] = id;
                    *len += 1;
                } else {
                    let mut all = ids.to_vec();
                    all.push(id);
                    *self = Members::of(all);
                }
            }
            Members::Sparse(s) => {
                // Checked as the set doubles: amortised O(1).
                if s.insert(id) && s.len().is_power_of_two() {
                    let ids: Vec<FlowId> = s.drain().collect();
                    *self = Members::of(ids);
                }
            }
            Members::Dense(d) => {
                let Bitmap { words, len } = &mut **d;
                let w = id as usize / 64;
                if w >= words.len() {
                    if !dense_enough(w + 1, *len + 1) {
                        let mut ids: Vec<FlowId> = bits(words).collect();
                        ids.push(id);
                        *self = Members::of(ids);
                        return;
                    }
                    words.resize(w + 1, 0);
                }
                let bit = 1u64 << (id % 64);
                if words[w] & bit == 0 {
                    words[w] |= bit;
                    *len += 1;
                }
            }
        }
    }

    fn remove(&mut self, id: FlowId) {
        match self {
            Members::Few { len, ids } => {
                let n = usize::from(*len);
                if let Some(i) = ids[..n].iter().position(|&x| x == id) {
                    ids[i] = ids[n - 1];
                    *len -= 1;
                }
            }
            Members::Sparse(s) => {
                if s.remove(&id) && s.len() <= DEMOTE {
                    *self = Members::of(s.drain().collect());
                }
            }
            Members::Dense(d) => {
                let Bitmap { words, len } = &mut **d;
                let w = id as usize / 64;
                let bit = 1u64 << (id % 64);
                if w < words.len() && words[w] & bit != 0 {
                    words[w] &= !bit;
                    *len -= 1;
                    // Well below one member per word: reshape (O(words),
                    // after at least three quarters of them went).
                    if *len * 4 < words.len() || *len <= DEMOTE {
                        let ids: Vec<FlowId> = bits(words).collect();
                        *self = Members::of(ids);
                    }
                }
            }
        }
    }
}

/// The set bits of `words`, ascending.
fn bits(words: &[u64]) -> impl Iterator<Item = FlowId> + '_ {
    words.iter().enumerate().flat_map(|(i, &w)| {
        let mut w = w;
        std::iter::from_fn(move || {
            if w == 0 {
                return None;
            }
            let b = w.trailing_zeros();
            w &= w - 1;
            Some(i as FlowId * 64 + b)
        })
    })
}

/// See the module docs.
#[derive(Default)]
pub struct TagIndex {
    flows: HashMap<u64, Members, Hasher>,
}

impl TagIndex {
    /// Records that flow `id` carries `tags` (a tag listed twice counts once).
    pub fn add(&mut self, id: FlowId, tags: &[u64]) {
        for &t in tags {
            self.flows.entry(t).or_insert(Members::Few { len: 0, ids: [0; FEW] }).insert(id);
        }
    }

    /// Forgets flow `id` under `tags` (the tags it was added with).
    pub fn remove(&mut self, id: FlowId, tags: &[u64]) {
        for t in tags {
            if let Some(set) = self.flows.get_mut(t) {
                set.remove(id);
                if set.len() == 0 {
                    self.flows.remove(t);
                }
            }
        }
    }

    /// Takes tag `t` out of the index; the flows that carried it (still
    /// listed under their other tags until removed).
    pub fn take(&mut self, t: u64) -> impl Iterator<Item = FlowId> {
        self.flows.remove(&t).map(Members::into_ids).unwrap_or_default().into_iter()
    }

    /// The flows carrying any of `tags`, ascending, each once.
    pub fn tagged(&self, tags: &[u64]) -> Vec<FlowId> {
        let mut ids: Vec<FlowId> =
            tags.iter().filter_map(|t| self.flows.get(t)).flat_map(Members::ids).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Distinct tags indexed.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flows_are_found_by_any_tag_and_forgotten_exactly() {
        let mut ix = TagIndex::default();
        ix.add(1, &[10, 11, 11]);
        ix.add(2, &[11, 12]);
        assert_eq!(ix.tagged(&[11]), vec![1, 2]);
        assert_eq!(ix.tagged(&[10, 12, 99]), vec![1, 2]);
        ix.remove(1, &[10, 11, 11]);
        assert_eq!(ix.tagged(&[10, 11]), vec![2]);
        assert_eq!(ix.len(), 2, "tag 10 went with its last flow");
        assert_eq!(ix.take(11).collect::<Vec<_>>(), vec![2]);
        assert_eq!(ix.tagged(&[11]), Vec::<FlowId>::new());
        ix.remove(2, &[11, 12]);
        assert!(ix.is_empty());
    }

    #[test]
    fn a_tags_entry_stays_small() {
        assert!(std::mem::size_of::<Members>() <= 16, "{}", std::mem::size_of::<Members>());
    }

    #[test]
    fn each_shape_is_taken_where_it_suits() {
        let mut ix = TagIndex::default();
        // Tag 1 on 1,000 dense ids, tag 2 on 100 ids a thousand apart,
        // tag 3 on two.
        for id in 0..1000 {
            ix.add(id, &[1]);
        }
        for i in 0..100 {
            ix.add(i * 1000, &[2]);
        }
        ix.add(5, &[3]);
        ix.add(70_000, &[3]);
        let shape = |ix: &TagIndex, t| match &ix.flows[&t] {
            Members::Few { .. } => "few",
            Members::Sparse(_) => "sparse",
            Members::Dense(_) => "dense",
        };
        assert_eq!((shape(&ix, 1), shape(&ix, 2), shape(&ix, 3)), ("dense", "sparse", "few"));
        // A far id on the dense tag would make its bitmap too big per
        // member: it becomes a hash set instead of growing.
        ix.add(1_000_000, &[1]);
        assert_eq!(shape(&ix, 1), "sparse");
        assert_eq!(ix.tagged(&[1]).len(), 1001);
        // Emptied down to a few: a vector again.
        for id in 0..999 {
            ix.remove(id, &[1]);
        }
        assert_eq!(shape(&ix, 1), "few");
        assert_eq!(ix.tagged(&[1]), vec![999, 1_000_000]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(FlowId, Vec<u64>),
        Remove(usize),
        Take(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Ids dense (a flow table's) and far, tags few, so that every tag
        // goes through every shape.
        let id = prop_oneof![4 => 0u32..300, 1 => 0u32..200_000];
        prop_oneof![
            6 => (id, prop::collection::vec(0u64..6, 1..4)).prop_map(|(i, t)| Op::Add(i, t)),
            4 => any::<usize>().prop_map(Op::Remove),
            1 => (0u64..6).prop_map(Op::Take),
        ]
    }

    proptest! {
        /// Whatever shape each tag's set takes, the index answers as a
        /// plain map of tag → set of flows would.
        #[test]
        fn answers_as_a_map_of_sets_would(ops in prop::collection::vec(op(), 1..600)) {
            let mut ix = TagIndex::default();
            let mut model: HashMap<u64, std::collections::BTreeSet<FlowId>> = HashMap::new();
            // Live flows and their tags (a flow id is added once while live).
            let mut live: Vec<(FlowId, Vec<u64>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Add(id, tags) => {
                        if live.iter().any(|(l, _)| *l == id) {
                            continue;
                        }
                        ix.add(id, &tags);
                        for &t in &tags {
                            model.entry(t).or_default().insert(id);
                        }
                        live.push((id, tags));
                    }
                    Op::Remove(i) if !live.is_empty() => {
                        let (id, tags) = live.swap_remove(i % live.len());
                        ix.remove(id, &tags);
                        for t in &tags {
                            if let Some(s) = model.get_mut(t) {
                                s.remove(&id);
                                if s.is_empty() {
                                    model.remove(t);
                                }
                            }
                        }
                    }
                    Op::Remove(_) => {}
                    Op::Take(t) => {
                        let mut got: Vec<FlowId> = ix.take(t).collect();
                        got.sort_unstable();
                        let want: Vec<FlowId> =
                            model.remove(&t).unwrap_or_default().into_iter().collect();
                        prop_assert_eq!(got, want);
                        // The flows keep their other tags.
                        for (_, tags) in &mut live {
                            tags.retain(|x| *x != t);
                        }
                    }
                }
                for t in 0u64..6 {
                    let want: Vec<FlowId> =
                        model.get(&t).map(|s| s.iter().copied().collect()).unwrap_or_default();
                    prop_assert_eq!(ix.tagged(&[t]), want, "tag {}", t);
                }
                prop_assert_eq!(ix.len(), model.len());
            }
        }
    }
}
