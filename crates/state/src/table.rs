//! The storage under both tables: a dense slot vector plus a hash index of
//! slot numbers, and a clock hand for incremental expiry.
//!
//! ```text
//!   index: HashTable<u32>  ──>  slots: Vec<Slot { expires_ms, key, val }>
//!         (5 B per bucket)             ^ hand: next slot to look at
//! ```
//!
//! Why not a `HashMap<K, V>`: the table must visit old entries a few at a
//! time (expiry and eviction without a full scan and without a second
//! structure ordered by time, which would double the size per entry). A
//! dense vector gives the clock hand stable positions to walk; removal is a
//! `swap_remove` whose moved slot gets its index entry re-pointed. The
//! index holds `u32`s, so it costs 5 bytes per bucket instead of
//! `size_of::<(K, V)>() + 1`.
//!
//! Hashing is foldhash with a seed the caller supplies (sans-I/O: no hidden
//! randomness); keys come from guests, so the agent passes a random seed.

use std::hash::{BuildHasher, Hash};

use foldhash::fast::FixedState;
use hashbrown::HashTable;

#[derive(Debug, Clone)]
pub(crate) struct Slot<K, V> {
    /// Milliseconds since the caller's epoch after which the entry is gone.
    pub expires_ms: u64,
    pub key: K,
    pub val: V,
}

#[derive(Debug, Clone)]
pub(crate) struct ExpiringMap<K, V> {
    slots: Vec<Slot<K, V>>,
    index: HashTable<u32>,
    hasher: FixedState,
    hand: usize,
}

impl<K: Hash + Eq + Copy, V> ExpiringMap<K, V> {
    pub fn new(seed: u64) -> Self {
        ExpiringMap {
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: FixedState::with_seed(seed),
            hand: 0,
        }
    }

    fn hash(&self, k: &K) -> u64 {
        self.hasher.hash_one(k)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes allocated on the heap (slots and index).
    pub fn heap_size(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<K, V>>() + self.index.allocation_size()
    }

    pub fn find(&self, k: &K) -> Option<usize> {
        let slots = &self.slots;
        self.index.find(self.hash(k), |&i| slots[i as usize].key == *k).map(|&i| i as usize)
    }

    pub fn get(&self, k: &K) -> Option<&Slot<K, V>> {
        self.find(k).map(|i| &self.slots[i])
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut Slot<K, V>> {
        self.find(k).map(|i| &mut self.slots[i])
    }

    pub fn slot(&self, i: usize) -> &Slot<K, V> {
        &self.slots[i]
    }

    /// Insert a key the caller knows is absent. The caller also keeps
    /// `len() < u32::MAX` (tables are capped far below).
    pub fn insert_new(&mut self, key: K, val: V, expires_ms: u64) -> usize {
        let i = self.slots.len();
        let h = self.hash(&key);
        self.slots.push(Slot { expires_ms, key, val });
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(h, i as u32, |&j| hasher.hash_one(slots[j as usize].key));
        i
    }

    /// Remove slot `i`; the last slot moves into its place.
    pub fn remove_at(&mut self, i: usize) -> Slot<K, V> {
        let h = self.hash(&self.slots[i].key);
        if let Ok(e) = self.index.find_entry(h, |&j| j as usize == i) {
            e.remove();
        }
        let last = self.slots.len() - 1;
        if i != last {
            let hl = self.hash(&self.slots[last].key);
            if let Some(j) = self.index.find_mut(hl, |&j| j as usize == last) {
                *j = i as u32;
            }
        }
        self.slots.swap_remove(i)
    }

    pub fn remove(&mut self, k: &K) -> Option<Slot<K, V>> {
        self.find(k).map(|i| self.remove_at(i))
    }

    /// Look at up to `n` slots from the clock hand, removing those expired at
    /// `now_ms` (handed to `gone`). Returns how many were removed.
    pub fn sweep(&mut self, now_ms: u64, n: usize, mut gone: impl FnMut(Slot<K, V>)) -> usize {
        let mut removed = 0;
        for _ in 0..n {
            if self.slots.is_empty() {
                break;
            }
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            if self.slots[self.hand].expires_ms <= now_ms {
                // The last slot moves into `hand`: look at it next, so the
                // hand does not advance.
                gone(self.remove_at(self.hand));
                removed += 1;
            } else {
                self.hand += 1;
            }
        }
        removed
    }

    /// Slot numbers of up to `n` slots from the clock hand (which moves past
    /// them), for eviction sampling.
    pub fn sample(&mut self, n: usize) -> impl Iterator<Item = usize> {
        let len = self.slots.len();
        let start = if self.hand >= len { 0 } else { self.hand };
        let n = n.min(len);
        self.hand = if len == 0 { 0 } else { (start + n) % len };
        (0..n).map(move |k| (start + k) % len)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot<K, V>> {
        self.slots.iter()
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_remove_keeps_index_consistent() {
        let mut m = ExpiringMap::<u32, u32>::new(1);
        for k in 0..100 {
            m.insert_new(k, k * 10, u64::from(k));
        }
        for k in (0..100).step_by(3) {
            assert_eq!(m.remove(&k).map(|s| s.val), Some(k * 10));
        }
        for k in 0..100 {
            let want = (k % 3 != 0).then_some(k * 10);
            assert_eq!(m.get(&k).map(|s| s.val), want, "key {k}");
        }
        // Sweep everything that expired by 49: keys < 50 not multiple of 3.
        let mut gone = Vec::new();
        let mut left = usize::MAX;
        while left > 0 {
            left = m.sweep(49, 1000, |s| gone.push(s.key));
        }
        gone.sort_unstable();
        let want: Vec<u32> = (0..50).filter(|k| k % 3 != 0).collect();
        assert_eq!(gone, want);
        assert_eq!(m.len(), 66 - want.len());
        for k in 50..100 {
            assert_eq!(m.get(&k).is_some(), k % 3 != 0);
        }
    }
}
