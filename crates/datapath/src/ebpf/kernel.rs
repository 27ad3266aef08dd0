//! The kernel side of the flow table: mask slots, action lists, per-flow
//! counter slots and flows-map entries, and the bookkeeping that keeps
//! them consistent.
//!
//! * A megaflow mask the kernel can express gets one of [`abi::MAX_MASKS`]
//!   slots while any flow uses it; `mdp_mask_list` holds the slots in use,
//!   busiest first ([`Kernel::reorder_masks`]). A flow whose mask finds no
//!   free slot stays in the agent (its packets are upcalled and executed
//!   from the agent's table).
//! * Action lists are shared by content: flows with equal actions (every
//!   flow to one port, say) use one slot. A slot no flow uses stays valid
//!   for packet-outs until it is reclaimed, oldest first; reclaiming bumps
//!   its generation, and a re-injected packet carries the generation it was
//!   sent with, so a reclaimed slot drops the packet instead of sending it
//!   somewhere else.
//! * Each offloaded flow has its own per-CPU counter slot, zeroed before
//!   the flow is inserted, and a metadata entry (tags, idle timeout) that a
//!   restarting agent reads to adopt the flow.
//! * The programs' exact-match cache names a flow by its counter slot and
//!   the slot's generation (`mdp_flow_gen`). Taking a flow out changes the
//!   generation, which retires every entry naming it, and a freed slot
//!   rests [`SLOT_REST`] before another flow gets it, so a program that
//!   checks an entry it has just filled against the flow never finds a
//!   newer flow in the same slot (see `exact_fill` in datapath.c).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use aya::maps::PerCpuValues;
use midonet_flow::Action;

use super::abi::{self, ActListBytes, KeyBytes};
use super::loader::Maps;
use super::sys;

/// How long a freed counter slot stays unused. A program's fill of the
/// exact-match cache takes microseconds; this is many orders more.
pub const SLOT_REST: Duration = Duration::from_secs(1);

fn err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// A flow's kernel counters over CPUs: packets, bytes, last used (ns),
/// TCP flags OR'ed.
pub type FlowCounters = (u64, u64, u64, u16);

/// Adds up one flow's `struct mdp_flow_stats` of every CPU.
fn sum_cpus(cpus: impl IntoIterator<Item = [u64; 4]>) -> FlowCounters {
    cpus.into_iter().fold((0, 0, 0, 0), |(p, b, t, f), c| {
        (p + c[0], b + c[1], t.max(c[2]), f | (c[3] & 0x1ff) as u16)
    })
}

/// What the kernel holds for one offloaded flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloaded {
    pub map_key: KeyBytes,
    pub mask_slot: u8,
    pub act: u32,
    pub stats: u32,
}

#[derive(Clone)]
struct MaskSlot {
    mask: KeyBytes,
    refs: usize,
    hits: u64,
}

struct ActSlot {
    content: Vec<u8>,
    refs: usize,
    gen: u16,
    stamp: u64,
}

/// See the module docs.
pub struct Kernel {
    masks: Vec<Option<MaskSlot>>,
    order: Vec<u8>,
    acts: Vec<Option<ActSlot>>,
    /// Every slot from 1 (0 is never used) up to this one is in use: slots
    /// never become free again, only idle, so the search for a never-used
    /// slot starts here.
    acts_unused_from: usize,
    act_by_content: HashMap<Vec<u8>, u32, foldhash::fast::RandomState>,
    idle_acts: VecDeque<(u32, u64)>,
    act_stamp: u64,
    /// Freed counter slots, oldest first, with when they were freed.
    stats_free: VecDeque<(u32, Instant)>,
    stats_next: u32,
    /// The next value written to `mdp_flow_gen` (any value the slot did
    /// not hold retires its entries; a counter makes that certain).
    gen_next: u32,
    ncpus: usize,
}

/// Why an install could not go to the kernel (the flow stays in the agent).
#[derive(Debug)]
pub enum KernelFull {
    Masks,
    Actions,
    Stats,
    Io(io::Error),
}

impl Kernel {
    pub fn new() -> io::Result<Kernel> {
        let ncpus = aya::util::nr_cpus().map_err(|(what, e)| err(what, e))?;
        Ok(Kernel {
            masks: vec![None; abi::MAX_MASKS],
            order: Vec::new(),
            acts: (0..abi::MAX_ACT_LISTS).map(|_| None).collect(),
            acts_unused_from: 1,
            act_by_content: HashMap::default(),
            idle_acts: VecDeque::new(),
            act_stamp: 0,
            stats_free: VecDeque::new(),
            // Slot 0 is never handed out, so a zeroed flows value points nowhere live.
            stats_next: 1,
            // Not 0, the value of a slot never written; differs between
            // agents, so a restarted one does not repeat its predecessor's.
            gen_next: (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.subsec_nanos())
                | 1),
            ncpus,
        })
    }

    pub fn ncpus(&self) -> usize {
        self.ncpus
    }

    /// Masks in use.
    pub fn mask_count(&self) -> usize {
        self.order.len()
    }

    fn write_order(&self, maps: &mut Maps) -> io::Result<()> {
        maps.mask_list
            .set(0, abi::encode_mask_list(&self.order), 0)
            .map_err(|e| err("mask list", e))
    }

    fn acquire_mask(&mut self, maps: &mut Maps, mask: &KeyBytes) -> Result<u8, KernelFull> {
        if let Some(i) = self.masks.iter().position(|m| m.as_ref().is_some_and(|m| m.mask == *mask))
        {
            if let Some(m) = self.masks[i].as_mut() {
                m.refs += 1;
            }
            return Ok(i as u8);
        }
        let i = self.masks.iter().position(Option::is_none).ok_or(KernelFull::Masks)?;
        // The slot's contents first, then the list that makes it probed.
        maps.masks.set(i as u32, mask, 0).map_err(|e| KernelFull::Io(err("mask", e)))?;
        self.masks[i] = Some(MaskSlot { mask: *mask, refs: 1, hits: 0 });
        self.order.push(i as u8);
        self.write_order(maps).map_err(KernelFull::Io)?;
        Ok(i as u8)
    }

    fn release_mask(&mut self, maps: &mut Maps, slot: u8) {
        let i = usize::from(slot);
        let Some(m) = self.masks.get_mut(i).and_then(Option::as_mut) else { return };
        m.refs -= 1;
        if m.refs > 0 {
            return;
        }
        self.masks[i] = None;
        self.order.retain(|&o| o != slot);
        let _ = self.write_order(maps);
        let _ = maps.masks.set(i as u32, [0u8; abi::KEY_LEN], 0);
    }

    /// An action list slot for `actions` with one more reference (`flow`)
    /// or none (a packet-out). Returns `(slot, generation)`.
    pub fn acquire_acts(
        &mut self,
        maps: &mut Maps,
        actions: &[Action],
        flow: bool,
    ) -> Result<(u32, u16), KernelFull> {
        let content = abi::encode_actions(actions, 0).ok_or(KernelFull::Actions)?;
        let key = content.to_vec();
        self.act_stamp += 1;
        let stamp = self.act_stamp;
        if let Some(&i) = self.act_by_content.get(&key) {
            if let Some(a) = self.acts[i as usize].as_mut() {
                if flow {
                    a.refs += 1;
                } else if a.refs == 0 {
                    a.stamp = stamp;
                    self.idle_acts.push_back((i, stamp));
                }
                return Ok((i, a.gen));
            }
        }
        let i = self.alloc_act().ok_or(KernelFull::Actions)?;
        let gen = self.acts[i as usize].as_ref().map_or(1, |a| a.gen.wrapping_add(1).max(1));
        if let Some(old) = self.acts[i as usize].take() {
            self.act_by_content.remove(&old.content);
        }
        let mut bytes: ActListBytes = content;
        bytes[4..6].copy_from_slice(&gen.to_ne_bytes());
        maps.actions.set(i, bytes, 0).map_err(|e| KernelFull::Io(err("action list", e)))?;
        let refs = usize::from(flow);
        self.acts[i as usize] = Some(ActSlot { content: key.clone(), refs, gen, stamp });
        if refs == 0 {
            self.idle_acts.push_back((i, stamp));
        }
        self.act_by_content.insert(key, i);
        Ok((i, gen))
    }

    fn alloc_act(&mut self) -> Option<u32> {
        // Never-used slots first (slot 0 is never used: a zero mark is "none").
        let start = self.acts_unused_from;
        if let Some(i) = self.acts.iter().skip(start).position(Option::is_none) {
            // Not past it: if the caller fails to fill it, it stays findable.
            self.acts_unused_from = start + i;
            return Some((start + i) as u32);
        }
        self.acts_unused_from = self.acts.len();
        // Then the idle slot unused the longest.
        while let Some((i, stamp)) = self.idle_acts.pop_front() {
            if let Some(a) = &self.acts[i as usize] {
                if a.refs == 0 && a.stamp == stamp {
                    return Some(i);
                }
            }
        }
        None
    }

    pub fn release_acts(&mut self, slot: u32) {
        if let Some(a) = self.acts.get_mut(slot as usize).and_then(Option::as_mut) {
            a.refs = a.refs.saturating_sub(1);
            if a.refs == 0 {
                self.act_stamp += 1;
                a.stamp = self.act_stamp;
                self.idle_acts.push_back((slot, self.act_stamp));
            }
        }
    }

    fn alloc_stats(&mut self, maps: &mut Maps) -> Result<u32, KernelFull> {
        let rested = self.stats_free.front().is_some_and(|(_, at)| at.elapsed() >= SLOT_REST);
        let i = if rested {
            self.stats_free.pop_front().map_or(0, |(i, _)| i)
        } else if self.stats_next < abi::MAX_STATS {
            self.stats_next += 1;
            self.stats_next - 1
        } else {
            return Err(KernelFull::Stats);
        };
        let zero = PerCpuValues::try_from(vec![[0u64; 4]; self.ncpus])
            .map_err(|e| KernelFull::Io(err("stats", e)))?;
        maps.flow_stats.set(i, zero, 0).map_err(|e| KernelFull::Io(err("stats", e)))?;
        Ok(i)
    }

    /// Put a flow in the kernel. `key`/`mask` come from [`abi::offload`].
    pub fn install(
        &mut self,
        maps: &mut Maps,
        key: &KeyBytes,
        mask: &KeyBytes,
        actions: &[Action],
        idle_ms: u64,
        tags: &[u64],
    ) -> Result<Offloaded, KernelFull> {
        let mask_slot = self.acquire_mask(maps, mask)?;
        let (act, _) = match self.acquire_acts(maps, actions, true) {
            Ok(a) => a,
            Err(e) => {
                self.release_mask(maps, mask_slot);
                return Err(e);
            }
        };
        let stats = match self.alloc_stats(maps) {
            Ok(s) => s,
            Err(e) => {
                self.release_acts(act);
                self.release_mask(maps, mask_slot);
                return Err(e);
            }
        };
        let map_key = abi::flow_map_key(key, mask, usize::from(mask_slot));
        let off = Offloaded { map_key, mask_slot, act, stats };
        let r = maps
            .flow_meta
            .insert(stats, abi::encode_meta(idle_ms, tags), 0)
            .and_then(|()| maps.flows.insert(map_key, abi::encode_flow(act, stats), 0));
        if let Err(e) = r {
            self.forget(maps, &off);
            return Err(KernelFull::Io(err("flows", e)));
        }
        Ok(off)
    }

    /// Take a flow out of the kernel.
    pub fn remove(&mut self, maps: &mut Maps, off: &Offloaded) {
        let _ = maps.flows.remove(&off.map_key);
        self.forget(maps, off);
    }

    /// Release a flow's slots without touching its flows-map entry (it was
    /// overwritten by a flow with the same key).
    pub fn forget(&mut self, maps: &mut Maps, off: &Offloaded) {
        let _ = maps.flow_meta.remove(&off.stats);
        self.retire(maps, off.stats);
        self.stats_free.push_back((off.stats, Instant::now()));
        self.release_acts(off.act);
        self.release_mask(maps, off.mask_slot);
    }

    /// Retire the exact-match entries that name counter slot `slot`.
    fn retire(&mut self, maps: &mut Maps, slot: u32) {
        self.gen_next = self.gen_next.wrapping_add(1).max(1);
        let _ = maps.flow_gen.set(slot, self.gen_next, 0);
    }

    /// Empty the exact-match cache (after adopting an earlier agent's
    /// flows: flows it dropped went without retiring their entries).
    pub fn clear_exact(&mut self, maps: &mut Maps) {
        let keys: Vec<KeyBytes> = maps.exact.keys().flatten().collect();
        for k in keys {
            let _ = maps.exact.remove(&k);
        }
    }

    /// `(packets, bytes, last used ns, TCP flags OR'ed)` of a flow, over
    /// CPUs.
    pub fn flow_counters(&self, maps: &Maps, off: &Offloaded) -> FlowCounters {
        match maps.flow_stats.get(&off.stats, 0) {
            Ok(v) => sum_cpus(v.iter().copied()),
            Err(_) => (0, 0, 0, 0),
        }
    }

    /// Every counter slot handed out so far, read at once: what
    /// [`flow_counters`](Self::flow_counters) gives, indexed by slot.
    /// `None` when the kernel cannot read a map in batches (the caller
    /// asks slot by slot).
    pub fn all_flow_counters(&self, maps: &Maps) -> Option<Vec<FlowCounters>> {
        use std::os::fd::AsFd;
        let mut raw = Vec::new();
        let value = std::mem::size_of::<[u64; 4]>();
        let fd = maps.flow_stats_fd.as_fd();
        if let Err(e) = sys::percpu_array_read(fd, self.stats_next, value, self.ncpus, &mut raw) {
            tracing::debug!(error = %e, "batch read of the flow counters");
            return None;
        }
        let cpu = |c: &[u8]| -> [u64; 4] {
            std::array::from_fn(|i| {
                u64::from_ne_bytes(c[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
            })
        };
        Some(
            raw.chunks_exact(value * self.ncpus)
                .map(|slot| sum_cpus(slot.chunks_exact(value).map(cpu)))
                .collect(),
        )
    }

    /// Probe the busiest masks first: sort by hits since the last call.
    pub fn reorder_masks(&mut self, maps: &mut Maps) {
        if self.order.len() < 2 {
            return;
        }
        let mut changed = false;
        for &s in &self.order {
            let total: u64 =
                maps.mask_hits.get(&u32::from(s), 0).map(|v| v.iter().sum()).unwrap_or(0);
            if let Some(m) = self.masks[usize::from(s)].as_mut() {
                m.hits = total;
            }
        }
        let before = self.order.clone();
        let masks = &self.masks;
        self.order.sort_by_key(|&s| {
            std::cmp::Reverse(masks[usize::from(s)].as_ref().map_or(0, |m| m.hits))
        });
        changed |= before != self.order;
        if changed {
            let _ = self.write_order(maps);
        }
    }

    /// Re-register an adopted flow's slots (after a restart).
    pub fn adopt(&mut self, maps: &Maps, off: &Offloaded, mask: &KeyBytes) {
        let s = usize::from(off.mask_slot);
        match self.masks[s].as_mut() {
            Some(m) => m.refs += 1,
            None => {
                self.masks[s] = Some(MaskSlot { mask: *mask, refs: 1, hits: 0 });
                self.order.push(off.mask_slot);
            }
        }
        if let Ok(bytes) = maps.actions.get(&off.act, 0) {
            let mut content = bytes;
            content[4..6].fill(0);
            let key = content.to_vec();
            let a = &mut self.acts[off.act as usize];
            match a {
                Some(a) => a.refs += 1,
                None => {
                    *a = Some(ActSlot {
                        content: key.clone(),
                        refs: 1,
                        gen: abi::act_list_gen(&bytes),
                        stamp: 0,
                    });
                    self.act_by_content.insert(key, off.act);
                }
            }
        }
        self.stats_next = self.stats_next.max(off.stats + 1);
    }

    /// After adoption: stats slots below the high-water mark that no
    /// adopted flow uses are free.
    pub fn finish_adoption(&mut self, used: &std::collections::HashSet<u32>) {
        let now = Instant::now();
        self.stats_free =
            (1..self.stats_next).filter(|s| !used.contains(s)).map(|s| (s, now)).collect();
    }
}
