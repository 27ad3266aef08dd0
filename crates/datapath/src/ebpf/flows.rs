//! The agent's copy of the flow table for the `ebpf` provider.
//!
//! Every installed megaflow is here, with its tags and idle timeout; the
//! ones the kernel can run are also in the BPF maps ([`Offloaded`]). The
//! kernel answers hits; this table answers what the kernel cannot:
//! * upcalls look it up first (tuple-space search, like the kernel's): a
//!   flow that stays in the agent, or one installed after the packet was
//!   sent up, executes here without asking the handler again;
//! * tag invalidation, idle expiry, flush and dump work on it, and remove
//!   the kernel entries of the flows they remove.
//!
//! Flow ids index a slab and are reused after removal, like the userspace
//! provider's.

use std::collections::HashMap;

use midonet_flow::{Actions, FlowKey, FlowMask, MaskedKey};

use super::kernel::Offloaded;
use crate::tags::TagIndex;
use crate::FlowId;

/// One installed flow.
#[derive(Debug, Clone)]
pub struct Entry {
    pub mask: FlowMask,
    pub masked: MaskedKey,
    pub actions: Actions,
    pub tags: Vec<u64>,
    pub idle_timeout_ms: u64,
    /// Packets executed from this table (upcalls that hit it).
    pub packets: u64,
    pub bytes: u64,
    /// TCP flags of those packets, OR'ed.
    pub tcp_flags: u16,
    /// Monotonic ns of the install and of the last packet seen here.
    pub created_ns: u64,
    pub used_ns: u64,
    /// The latest use known without asking the kernel again: the install,
    /// or what the kernel said at the last expiry check. Until the idle
    /// timeout has passed since then the flow cannot have expired, so
    /// expiry asks the kernel (a syscall per flow) only about the others.
    pub known_used_ns: u64,
    pub off: Option<Offloaded>,
}

/// See the module docs.
#[derive(Default)]
pub struct FlowIndex {
    slab: Vec<Option<Entry>>,
    free: Vec<FlowId>,
    live: usize,
    by_mask: Vec<(FlowMask, HashMap<MaskedKey, FlowId, foldhash::fast::RandomState>)>,
    tags: TagIndex,
}

impl FlowIndex {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Distinct masks in the table.
    pub fn masks(&self) -> usize {
        self.by_mask.len()
    }

    pub fn get(&self, id: FlowId) -> Option<&Entry> {
        self.slab.get(id as usize).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut Entry> {
        self.slab.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// The flow with this exact mask and masked key, if any.
    pub fn find(&self, mask: &FlowMask, masked: &MaskedKey) -> Option<FlowId> {
        self.by_mask.iter().find(|(m, _)| m == mask).and_then(|(_, t)| t.get(masked).copied())
    }

    /// The flow `key` hits.
    pub fn lookup(&self, key: &FlowKey) -> Option<FlowId> {
        self.by_mask.iter().find_map(|(m, t)| t.get(&m.apply(key)).copied())
    }

    /// Add a flow (the caller removed any flow with the same mask and
    /// masked key first).
    pub fn insert(&mut self, e: Entry) -> FlowId {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slab.push(None);
                (self.slab.len() - 1) as FlowId
            }
        };
        self.tags.add(id, &e.tags);
        match self.by_mask.iter_mut().find(|(m, _)| *m == e.mask) {
            Some((_, t)) => {
                t.insert(e.masked, id);
            }
            None => {
                let mut t = HashMap::with_hasher(foldhash::fast::RandomState::default());
                t.insert(e.masked, id);
                self.by_mask.push((e.mask, t));
            }
        }
        self.slab[id as usize] = Some(e);
        self.live += 1;
        id
    }

    pub fn remove(&mut self, id: FlowId) -> Option<Entry> {
        let e = self.slab.get_mut(id as usize)?.take()?;
        self.free.push(id);
        self.live -= 1;
        if let Some(i) = self.by_mask.iter().position(|(m, _)| *m == e.mask) {
            self.by_mask[i].1.remove(&e.masked);
            if self.by_mask[i].1.is_empty() {
                self.by_mask.swap_remove(i);
            }
        }
        self.tags.remove(id, &e.tags);
        Some(e)
    }

    /// Ids of the flows carrying any of `tags`.
    pub fn tagged(&self, tags: &[u64]) -> Vec<FlowId> {
        self.tags.tagged(tags)
    }

    pub fn ids(&self) -> Vec<FlowId> {
        self.iter().map(|(id, _)| id).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &Entry)> {
        self.slab.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| (i as FlowId, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midonet_flow::{FieldId, InPort, MacAddr};

    fn entry(dst: u8, tags: &[u64]) -> (FlowKey, Entry) {
        let k = FlowKey {
            in_port: InPort::Port(1),
            eth_dst: MacAddr([2, 0, 0, 0, 0, dst]),
            ..FlowKey::default()
        };
        let mut mask = FlowMask::empty();
        mask.mark(FieldId::InPort);
        mask.mark(FieldId::EthDst);
        let e = Entry {
            mask,
            masked: mask.apply(&k),
            actions: Actions::new(),
            tags: tags.to_vec(),
            idle_timeout_ms: 0,
            packets: 0,
            tcp_flags: 0,
            bytes: 0,
            created_ns: 0,
            used_ns: 0,
            known_used_ns: 0,
            off: None,
        };
        (k, e)
    }

    #[test]
    fn lookup_tags_and_reuse() {
        let mut t = FlowIndex::default();
        let (k1, e1) = entry(1, &[10, 11]);
        let (k2, e2) = entry(2, &[11]);
        let a = t.insert(e1.clone());
        let b = t.insert(e2);
        assert_eq!(t.lookup(&FlowKey { l4_src: 7, ..k1 }), Some(a));
        assert_eq!(t.find(&e1.mask, &e1.masked), Some(a));
        assert_eq!(t.tagged(&[11, 99]), vec![a, b]);
        assert!(t.remove(a).is_some());
        assert_eq!(t.lookup(&k1), None);
        assert_eq!(t.tagged(&[10]), Vec::<FlowId>::new());
        assert_eq!(t.lookup(&k2), Some(b));
        let (_, e3) = entry(3, &[]);
        assert_eq!(t.insert(e3), a, "ids are reused");
        assert_eq!((t.len(), t.masks()), (2, 1));
    }
}
