//! Recirculation ids of flows split at a reverse NAT (issue 8).
//!
//! A split flow's first half reverse-translates a reply from the
//! datapath's table and looks it up again under the in-port
//! `RECIRC_PORT_BASE + id`, where the second halves wait
//! (`midonet_sim::Split`, `midonet_datapath::RevNatTable`). The id stands
//! for everything the first half matched, so that a second half, which
//! matches only what the simulation read after the translation, is only
//! ever reached from the first half it was simulated behind:
//!
//! * one id per first half: its mask, its masked key, the kind of
//!   translation and the translating device; the same first half simulated
//!   again gets the same id (its second halves stay valid: they carry
//!   every tag the first half carries, so whatever removes it removes
//!   them);
//! * **an id is never given to another first half** while this agent
//!   runs; a restarted agent first reserves every id the flows it adopted
//!   use ([`RecircIds::reserve`]), because their second halves may still
//!   be installed;
//! * when every id is taken, a reply's flow is not split (it is then the
//!   per-connection flow of before: slower, not wrong);
//! * an id whose second halves read conntrack (`midonet_sim::Split::conntrack`)
//!   is marked once the datapath was told ([`RecircIds::mark_conntrack`]):
//!   from then on its first half looks for each reply's connection in the
//!   datapath's conntrack table, and a reply whose connection is not there
//!   is looked up under the id's untracked in-port instead
//!   (`RECIRC_PORT_BASE + RECIRC_UNTRACKED + id`). Second halves that
//!   found their connection go under the id's own in-port only; those that
//!   read no conntrack (replies to a VM without a security group, behind
//!   the same first half) under both, so their replies never need a
//!   connection tracked.

use std::collections::HashMap;

use midonet_datapath::{FlowMask, RECIRC_MAX};
use midonet_flow::MaskedKey;

/// What a first half matches (its identity).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FirstHalf {
    pub mask: FlowMask,
    pub key: MaskedKey,
    /// `RevNatKind` as its code.
    pub kind: u8,
    pub tracker: [u8; 16],
}

/// The ids given out, and those reserved.
#[derive(Debug, Default)]
pub struct RecircIds {
    ids: HashMap<FirstHalf, u32>,
    /// Ids in use by flows of an earlier agent (never given out).
    reserved: Vec<bool>,
    /// Ids whose second halves read conntrack (the datapath was told).
    conntrack: std::collections::HashSet<u32>,
    next: u32,
}

impl RecircIds {
    /// Never give out `id` (an adopted flow's).
    pub fn reserve(&mut self, id: u32) {
        if id < RECIRC_MAX {
            if self.reserved.is_empty() {
                self.reserved = vec![false; RECIRC_MAX as usize];
            }
            self.reserved[id as usize] = true;
        }
    }

    /// The id of `half`, and whether it is new (the datapath must then be
    /// told what it translates); `None` when every id is taken.
    pub fn get(&mut self, half: &FirstHalf) -> Option<(u32, bool)> {
        if let Some(id) = self.ids.get(half) {
            return Some((*id, false));
        }
        while self.next < RECIRC_MAX {
            let id = self.next;
            self.next += 1;
            if self.reserved.get(id as usize).copied().unwrap_or(false) {
                continue;
            }
            self.ids.insert(*half, id);
            return Some((id, true));
        }
        None
    }

    /// `id`'s first half checks conntrack from now on (the datapath was
    /// told).
    pub fn mark_conntrack(&mut self, id: u32) {
        self.conntrack.insert(id);
    }

    /// Whether `id`'s first half checks conntrack.
    pub fn checks_conntrack(&self, id: u32) -> bool {
        self.conntrack.contains(&id)
    }

    /// How many ids are given out.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use midonet_datapath::{FlowKey, InPort};
    use midonet_flow::FieldId;

    fn half(port: u32) -> FirstHalf {
        let mut mask = FlowMask::empty();
        mask.mark(FieldId::InPort);
        let key = FlowKey { in_port: InPort::Port(port), ..FlowKey::default() };
        FirstHalf { mask, key: mask.apply(&key), kind: 0, tracker: [7; 16] }
    }

    #[test]
    fn the_same_first_half_keeps_its_id_and_others_get_new_ones() {
        let mut ids = RecircIds::default();
        assert_eq!(ids.get(&half(1)), Some((0, true)));
        assert_eq!(ids.get(&half(2)), Some((1, true)));
        assert_eq!(ids.get(&half(1)), Some((0, false)));
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn reserved_ids_are_skipped_and_the_ids_run_out_cleanly() {
        let mut ids = RecircIds::default();
        ids.reserve(0);
        ids.reserve(2);
        assert_eq!(ids.get(&half(1)), Some((1, true)));
        assert_eq!(ids.get(&half(2)), Some((3, true)));
        for p in 3..RECIRC_MAX {
            let _ = ids.get(&half(p));
        }
        assert_eq!(ids.get(&half(RECIRC_MAX + 10)), None, "all taken: no split");
        assert_eq!(ids.get(&half(1)), Some((1, false)), "a known one still has its id");
    }
}
