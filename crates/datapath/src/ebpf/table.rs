//! The flow-table calls: install, invalidate, flush, expire and dump
//! megaflows, keeping the agent's copy ([`super::flows`]) and the kernel's
//! ([`super::kernel`]) in step; and the counters of both, as `stats`.

use midonet_flow::{FlowKey, ParseError};

use super::flows::Entry;
use super::kernel::FlowCounters;
use super::{abi, kernel_sum, sys, State};
use crate::workers::Workers;
use crate::{
    DpError, DpStats, FlowId, FlowInfo, FlowInstall, PortCounters, PortNo, PortStats, TableStats,
};

/// Reading more flows than this reads every counter slot in batches
/// instead (a few calls for the whole table against one per flow).
const BATCH_READ_FROM: usize = 256;

impl State {
    fn remove_flow(&mut self, id: FlowId) -> bool {
        match self.flows.remove(id) {
            Some(e) => {
                if let Some(off) = e.off {
                    self.k.remove(&mut self.bpf.maps, &off);
                }
                true
            }
            None => false,
        }
    }

    pub(super) fn install(&mut self, key: &FlowKey, f: FlowInstall) -> Result<FlowId, DpError> {
        let masked = f.mask.apply(key);
        let old = self.flows.find(&f.mask, &masked);
        if old.is_none() && self.flows.len() >= self.cfg.table.max_flows {
            return Err(DpError::TableFull);
        }
        let off = abi::offload(key, &f.mask, &f.actions).and_then(|(kb, mb)| {
            match self.k.install(
                &mut self.bpf.maps,
                &kb,
                &mb,
                &f.actions,
                f.idle_timeout_ms,
                &f.tags,
            ) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::debug!(?e, "flow stays in the agent");
                    None
                }
            }
        });
        if let Some(old) = old {
            // The new flow took over the old one's map key (overwritten in
            // place, so no packet misses meanwhile): free only its slots.
            if let Some(e) = self.flows.remove(old) {
                if let Some(o) = e.off {
                    if off.is_some_and(|n| n.map_key == o.map_key) {
                        self.k.forget(&mut self.bpf.maps, &o);
                    } else {
                        self.k.remove(&mut self.bpf.maps, &o);
                    }
                }
            }
        }
        let now = sys::monotonic_ns();
        Ok(self.flows.insert(Entry {
            mask: f.mask,
            masked,
            actions: f.actions,
            tags: f.tags,
            idle_timeout_ms: f.idle_timeout_ms,
            packets: 0,
            tcp_flags: 0,
            bytes: 0,
            created_ns: now,
            used_ns: 0,
            known_used_ns: now,
            off,
        }))
    }

    pub(super) fn invalidate_tags(&mut self, tags: &[u64]) -> usize {
        self.flows.tagged(tags).into_iter().filter(|&id| self.remove_flow(id)).count()
    }

    /// The agent's invalidation (not a miss answer's own): answers in
    /// flight must not install flows it makes stale ([`crate::workers`]).
    pub(super) fn invalidate_for_agent(&mut self, tags: &[u64]) -> usize {
        if let Some(w) = self.workers.as_mut() {
            w.invalidated(tags);
        }
        self.invalidate_tags(tags)
    }

    pub(super) fn flush_flows(&mut self) -> usize {
        if let Some(w) = self.workers.as_mut() {
            w.flushed();
        }
        self.flows.ids().into_iter().filter(|&id| self.remove_flow(id)).count()
    }

    /// Kernel and agent counters of a flow, when it last saw a packet, and
    /// the TCP flags it carried. `all` is every slot's kernel counters read
    /// at once ([`Kernel::all_flow_counters`](super::kernel::Kernel)), or
    /// `None` to ask for this flow's alone.
    fn flow_use(&self, e: &Entry, all: Option<&[FlowCounters]>) -> FlowCounters {
        let (mut p, mut b, mut t, mut f) = (e.packets, e.bytes, e.used_ns, e.tcp_flags);
        if let Some(off) = &e.off {
            let (kp, kb, kt, kf) = match all.and_then(|a| a.get(off.stats as usize)) {
                Some(c) => *c,
                None => self.k.flow_counters(&self.bpf.maps, off),
            };
            p += kp;
            b += kb;
            t = t.max(kt);
            f |= kf;
        }
        (p, b, if t == 0 { e.created_ns } else { t }, f)
    }

    /// Every flow's kernel counters in a few system calls, when more than
    /// `n` flows are to be read (below that, one call per flow is cheaper
    /// than reading every slot).
    fn counters_if_many(&self, n: usize) -> Option<Vec<FlowCounters>> {
        (n > BATCH_READ_FROM).then(|| self.k.all_flow_counters(&self.bpf.maps)).flatten()
    }

    /// Remove flows idle past their timeout; returns how many went. Only
    /// flows idle for their timeout since their last known use are asked
    /// about (`Entry::known_used_ns`): once a second, asking the kernel
    /// about every flow was a syscall per flow on this thread, 65,536 of
    /// them a second with a full table, and misses waited behind them.
    pub(super) fn expire(&mut self) -> usize {
        let now = sys::monotonic_ns();
        let idle_since = |e: &Entry, used: u64| {
            e.idle_timeout_ms > 0 && now.saturating_sub(used) >= e.idle_timeout_ms * 1_000_000
        };
        let maybe: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, e)| idle_since(e, e.known_used_ns.max(e.used_ns)))
            .map(|(id, _)| id)
            .collect();
        let all = self.counters_if_many(maybe.len());
        let mut dead = Vec::new();
        for id in maybe {
            let Some(e) = self.flows.get(id) else { continue };
            let (_, _, used, _) = self.flow_use(e, all.as_deref());
            if idle_since(e, used) {
                dead.push(id);
            } else if let Some(e) = self.flows.get_mut(id) {
                e.known_used_ns = used;
            }
        }
        dead.into_iter().filter(|&id| self.remove_flow(id)).count()
    }

    pub(super) fn dump_flows(&self) -> Vec<FlowInfo> {
        let now = sys::monotonic_ns();
        let all = self.counters_if_many(self.flows.len());
        self.flows
            .iter()
            .map(|(id, e)| {
                let (packets, bytes, used, tcp_flags) = self.flow_use(e, all.as_deref());
                FlowInfo {
                    id,
                    mask: e.mask,
                    masked_key: *e.masked.key(),
                    actions: e.actions.clone(),
                    tags: e.tags.clone(),
                    packets,
                    bytes,
                    tcp_flags,
                    idle_ms: now.saturating_sub(used) / 1_000_000,
                    age_ms: now.saturating_sub(e.created_ns) / 1_000_000,
                }
            })
            .collect()
    }

    pub(super) fn stats(&self) -> DpStats {
        let sum4 = |p: u32| -> PortCounters {
            let v = self.bpf.maps.port_stats.get(&p, 0);
            let s = v.map(|v| {
                v.iter().fold([0u64; 4], |mut a, c| {
                    for i in 0..4 {
                        a[i] += c[i];
                    }
                    a
                })
            });
            let s = s.unwrap_or([0; 4]);
            let (upcalls, upcall_limited, upcall_borrowed) = self
                .bpf
                .maps
                .upcall_limits
                .get(&p, 0)
                .map(|v| v.iter().fold((0, 0, 0), |(u, l, b), c| (u + c[2], l + c[3], b + c[4])))
                .unwrap_or((0, 0, 0));
            PortCounters {
                rx_packets: s[0],
                rx_bytes: s[1],
                tx_packets: s[2],
                tx_bytes: s[3],
                upcalls,
                upcall_limited,
                upcall_borrowed,
            }
        };
        let ports = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                e.as_ref().map(|e| PortStats {
                    port: i as PortNo,
                    name: e.name.clone(),
                    counters: sum4(i as u32),
                })
            })
            .collect();
        let mut drops = self.c.drops;
        for c in 0..abi::counter::HIT {
            if let Some(r) = abi::drop_reason(c) {
                drops.add(r, kernel_sum(&self.bpf, c));
            }
        }
        // Cache hits are counted in HIT too.
        let exact_hits = kernel_sum(&self.bpf, abi::counter::EXACT_HIT);
        DpStats {
            ports,
            tunnel: sum4(0),
            drops,
            parse_errors: ParseError::ALL
                .iter()
                .copied()
                .zip(self.c.parse.iter().copied())
                .collect(),
            table: TableStats {
                emc_hits: exact_hits,
                megaflow_hits: kernel_sum(&self.bpf, abi::counter::HIT).saturating_sub(exact_hits)
                    + self.c.hits,
                misses: self.c.upcalls,
                flows: self.flows.len(),
                subtables: self.flows.masks(),
                full: 0,
            },
            upcalls: self.c.upcalls,
            rx_batches: self.c.ring_batches,
            // The kernel's vxlan device sends plain RFC 7348 itself.
            tunnel_offload_resolved: 0,
            tunnel_checksums_completed: 0,
            // The kernel forwards each segment in its sender's context.
            tcp_fins_merged: 0,
            tunnel_decapsulated: kernel_sum(&self.bpf, abi::counter::TUNNEL_DECAP),
            tunnel_encapsulated: kernel_sum(&self.bpf, abi::counter::TUNNEL_ENCAP),
            rev_nat_hits: kernel_sum(&self.bpf, abi::counter::REV_NAT_HIT),
            rev_nat_misses: kernel_sum(&self.bpf, abi::counter::REV_NAT_MISS),
            ct_misses: kernel_sum(&self.bpf, abi::counter::CT_MISS),
            state_conns: kernel_sum(&self.bpf, abi::counter::STATE_CONNS),
            state_bindings: kernel_sum(&self.bpf, abi::counter::STATE_BINDINGS),
            state_rejected: kernel_sum(&self.bpf, abi::counter::STATE_REJECTED),
            workers: self.workers.as_ref().map(Workers::stats).unwrap_or_default(),
            miss_timing: self.c.timing,
        }
    }
}
