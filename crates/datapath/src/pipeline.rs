//! The per-packet pipeline shared by every provider: key extraction, flow
//! lookup, upcall, action execution, counters.
//!
//! A provider supplies an [`Io`] (where outputs go) and feeds frames in
//! [`Slot`]s. Invariants the providers rely on:
//! * Outputs may be queued by reference to the slot's buffer (the userspace
//!   provider does, for `sendmmsg`), so the executor calls [`Io::flush`]
//!   before it rewrites a frame that already has an output queued, and the
//!   provider flushes before it reuses a receive slot. Generated frames are
//!   kept in `keep` until the provider's flush.
//! * Flows are installed after the packet that caused them is executed
//!   (the handler's decision is executed first), so an install can never
//!   change what happens to the current packet.
//! * Tunnel sources are checked by the provider, once per received message,
//!   with [`Core::tunnel_source_allowed`] before [`Core::process_tunnel`]
//!   (the crate docs say who may send and what holds before the agent
//!   names the peers).
//! * A flow hit never allocates: actions are read in place from the table
//!   and rewrites work in the slot's buffer, a VLAN push growing into its
//!   headroom. The rewrites are `midonet_flow`'s ([`midonet_flow::set_field`],
//!   [`midonet_flow::push_vlan_in_place`], [`midonet_flow::pop_vlan_in_place`]),
//!   the one implementation the simulation's actions are defined by; this
//!   module only keeps the slot's offsets and virtio-net header in step.

use std::net::Ipv4Addr;
use std::time::Instant;

use hashbrown::{HashMap, HashSet};
use midonet_flow::{Action, Actions, FlowKey, FlowMask, InPort, ParseError};
use midonet_wire::checksum::{fold, sum};
use midonet_wire::ethernet::{EthernetFrame, ETHERTYPE_IPV4, ETH_HEADER_SIZE, VLAN_TAG_SIZE};
use midonet_wire::{ipv4, udp, Ipv4Packet, UdpPacket};

use crate::limit::{Budget, UpcallLimiter, UpcallLimits};
use crate::sys::{Slot, VnetHdr, HEADROOM};
use crate::table::{FlowSpec, FlowTable, InsertError, TableConfig};
use crate::workers::{Miss, Workers};
use crate::{
    DpError, DpStats, DropCounters, DropReason, FlowId, FlowInfo, FlowInstall, MissDecision,
    PortCounters, PortNo, PortStats, TunnelOffload, UpcallHandler,
};

/// Everything the pipeline counts.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub ports: Vec<PortCounters>,
    pub tunnel: PortCounters,
    pub drops: DropCounters,
    pub parse: [u64; ParseError::ALL.len()],
    pub upcalls: u64,
    pub rx_batches: u64,
    /// Offloaded frames finished in software before the tunnel
    /// ([`crate::offload`]), for a peer that takes no offload metadata.
    pub tunnel_offload_resolved: u64,
    /// Plain frames from the tunnel whose partial checksum was completed
    /// here ([`crate::offload::complete_unfinished`]).
    pub tunnel_checksums_completed: u64,
    /// Pure FINs merged into the data segment before them
    /// ([`crate::finmerge`]).
    pub tcp_fins_merged: u64,
}

impl Counters {
    #[inline]
    pub fn port(&mut self, p: PortNo) -> &mut PortCounters {
        let i = p as usize;
        if i >= self.ports.len() {
            self.ports.resize(i + 1, PortCounters::default());
        }
        &mut self.ports[i]
    }

    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.drops.add(r, 1);
    }
}

/// Where a provider's outputs go.
pub trait Io {
    /// Queue `slot`'s frame (with its virtio-net header) on a local port.
    /// Returns false when the port does not exist.
    fn output(&mut self, port: PortNo, slot: &Slot, counters: &mut Counters) -> bool;
    /// Queue `slot`'s frame to `dst` behind the VXLAN header `hdr`.
    fn tunnel(&mut self, dst: Ipv4Addr, hdr: [u8; 8], slot: &Slot, counters: &mut Counters);
    /// Send everything queued; count tx packets/bytes and failures.
    fn flush(&mut self, counters: &mut Counters);
}

/// Deepest nesting of `Userspace` → decision → `Userspace`.
const MAX_DEPTH: u8 = 2;

/// The pipeline state of one datapath (owned by its thread).
pub struct Core<I: Io> {
    pub table: FlowTable<FlowMask, Actions>,
    pub names: Vec<Option<String>>,
    pub tunnel_ports: HashMap<u32, PortNo>,
    /// Outer IPv4 sources accepted over the tunnel; `None` until the agent
    /// names them ([`crate::Datapath::set_tunnel_peers`]): all accepted.
    pub tunnel_peers: Option<HashSet<Ipv4Addr>>,
    pub counters: Counters,
    pub handler: Option<Box<dyn UpcallHandler>>,
    /// Miss workers ([`crate::workers`]); `None`: `handler` runs inline.
    pub workers: Option<Workers<VnetHdr>>,
    /// Per-port upcall budgets (checked on misses only).
    pub limiter: UpcallLimiter,
    /// Which peers get offload metadata across the tunnel (in the VXLAN
    /// reserved bits: peers of our own userspace kind); the others get
    /// offloads finished here, as plain RFC 7348 ([`crate::offload`]).
    pub tunnel_offload: TunnelOffload,
    pub io: I,
    keep: Vec<Slot>,
    installs: Vec<(FlowKey, FlowInstall)>,
    /// Tags to invalidate before `installs` (see `MissDecision::invalidate`).
    stale: Vec<u64>,
    epoch: Instant,
    pub now_ms: u64,
}

/// The parts of [`Core`] the executor needs while the table is borrowed.
struct Ctx<'a, I: Io> {
    io: &'a mut I,
    counters: &'a mut Counters,
    handler: &'a mut Option<Box<dyn UpcallHandler>>,
    workers: &'a mut Option<Workers<VnetHdr>>,
    limiter: &'a mut UpcallLimiter,
    tunnel_offload: &'a TunnelOffload,
    epoch: Instant,
    keep: &'a mut Vec<Slot>,
    installs: &'a mut Vec<(FlowKey, FlowInstall)>,
    stale: &'a mut Vec<u64>,
}

/// A [`Ctx`] of `core`'s fields, borrowed one by one, so that its flow
/// table stays free for the caller.
macro_rules! ctx {
    ($core:ident) => {
        Ctx {
            io: &mut $core.io,
            counters: &mut $core.counters,
            handler: &mut $core.handler,
            workers: &mut $core.workers,
            limiter: &mut $core.limiter,
            tunnel_offload: &$core.tunnel_offload,
            epoch: $core.epoch,
            keep: &mut $core.keep,
            installs: &mut $core.installs,
            stale: &mut $core.stale,
        }
    };
}

impl<I: Io> Core<I> {
    pub fn new(io: I, handler: Option<Box<dyn UpcallHandler>>, table: TableConfig) -> Self {
        Core {
            table: FlowTable::new(table),
            names: Vec::new(),
            tunnel_ports: HashMap::new(),
            tunnel_peers: None,
            counters: Counters::default(),
            handler,
            workers: None,
            limiter: UpcallLimiter::new(UpcallLimits::UNLIMITED),
            tunnel_offload: TunnelOffload::Always,
            io,
            keep: Vec::new(),
            installs: Vec::new(),
            stale: Vec::new(),
            epoch: Instant::now(),
            now_ms: 0,
        }
    }

    /// Refresh the coarse clock (once per batch is enough).
    #[inline]
    pub fn tick(&mut self) {
        self.now_ms = self.epoch.elapsed().as_millis() as u64;
    }

    /// Register a port name under the lowest free number.
    pub fn alloc_port(&mut self, name: &str) -> Result<PortNo, DpError> {
        if self.names.iter().flatten().any(|n| n == name) {
            return Err(DpError::PortExists(name.to_owned()));
        }
        // Port 0 is never used: InPort's default is Port(0), so a zeroed
        // key can never be mistaken for a real port.
        let p = match self.names.iter().skip(1).position(Option::is_none) {
            Some(i) => i + 1,
            None => self.names.len().max(1),
        };
        if p >= self.names.len() {
            self.names.resize(p + 1, None);
        }
        self.names[p] = Some(name.to_owned());
        *self.counters.port(p as PortNo) = PortCounters::default();
        self.limiter.reset_port(p as PortNo);
        Ok(p as PortNo)
    }

    pub fn free_port(&mut self, p: PortNo) -> Result<(), DpError> {
        match self.names.get_mut(p as usize) {
            Some(n @ Some(_)) => {
                *n = None;
                self.tunnel_ports.retain(|_, v| *v != p);
                Ok(())
            }
            _ => Err(DpError::NoSuchPort(p)),
        }
    }

    pub fn has_port(&self, p: PortNo) -> bool {
        matches!(self.names.get(p as usize), Some(Some(_)))
    }

    pub fn bind_tunnel_key(&mut self, key: u32, p: PortNo) -> Result<(), DpError> {
        if !self.has_port(p) {
            return Err(DpError::NoSuchPort(p));
        }
        self.tunnel_ports.insert(key & 0x00ff_ffff, p);
        Ok(())
    }

    pub fn install(&mut self, key: &FlowKey, f: FlowInstall) -> Result<FlowId, DpError> {
        let spec = FlowSpec {
            mask: f.mask,
            actions: f.actions,
            tags: f.tags,
            idle_timeout_ms: f.idle_timeout_ms,
        };
        self.table.insert(key, spec, self.now_ms).map_err(|InsertError::Full| DpError::TableFull)
    }

    /// Remove the flows carrying any of `tags`; returns how many.
    pub fn invalidate_tags(&mut self, tags: &[u64]) -> usize {
        if let Some(w) = self.workers.as_mut() {
            w.invalidated(tags);
        }
        self.table.invalidate_tags(tags)
    }

    /// Remove every flow; returns how many.
    pub fn flush_flows(&mut self) -> usize {
        if let Some(w) = self.workers.as_mut() {
            w.flushed();
        }
        self.table.flush()
    }

    /// Remove idle flows; returns how many went.
    pub fn expire(&mut self) -> usize {
        self.tick();
        self.table.expire(self.now_ms).len()
    }

    pub fn stats(&self) -> DpStats {
        let ports = self
            .names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.as_ref().map(|n| PortStats {
                    port: i as PortNo,
                    name: n.clone(),
                    counters: self.counters.ports.get(i).copied().unwrap_or_default(),
                })
            })
            .collect();
        DpStats {
            ports,
            tunnel: self.counters.tunnel,
            drops: self.counters.drops,
            parse_errors: ParseError::ALL
                .iter()
                .copied()
                .zip(self.counters.parse.iter().copied())
                .collect(),
            table: self.table.stats(),
            upcalls: self.counters.upcalls,
            rx_batches: self.counters.rx_batches,
            tunnel_offload_resolved: self.counters.tunnel_offload_resolved,
            tunnel_checksums_completed: self.counters.tunnel_checksums_completed,
            tcp_fins_merged: self.counters.tcp_fins_merged,
            tunnel_decapsulated: 0,
            tunnel_encapsulated: 0,
            // No reverse-NAT table, so no split flows.
            rev_nat_hits: 0,
            rev_nat_misses: 0,
            ct_misses: 0,
            state_conns: 0,
            state_bindings: 0,
            state_rejected: 0,
            workers: self.workers.as_ref().map(Workers::stats).unwrap_or_default(),
            // Its misses never leave user space: nothing to time apart
            // from the handler, which the agent times itself.
            miss_timing: Default::default(),
        }
    }

    pub fn dump_flows(&self) -> Vec<FlowInfo> {
        self.table
            .iter()
            .map(|(id, f)| FlowInfo {
                id,
                mask: f.mask,
                masked_key: *f.masked.key(),
                actions: f.actions.clone(),
                tags: f.tags.to_vec(),
                packets: f.packets,
                bytes: f.bytes,
                tcp_flags: f.tcp_flags,
                idle_ms: self.now_ms.saturating_sub(f.last_used_ms),
                age_ms: self.now_ms.saturating_sub(f.created_ms),
            })
            .collect()
    }

    /// Packet-out from the agent.
    pub fn execute_generated(&mut self, frame: &[u8], actions: &Actions) {
        let mut ctx = ctx!(self);
        emit_generated(&mut ctx, frame, actions, MAX_DEPTH);
        self.finish_packet();
    }

    /// Applies the answers the miss workers have given, in order; returns
    /// how many.
    pub fn finish_misses(&mut self) -> usize {
        let Some(w) = self.workers.as_mut() else { return 0 };
        let mut done = Vec::new();
        w.complete(|m, d| done.push((m, d)));
        for (m, d) in &mut done {
            let mut slot = Slot::from_frame(&m.frame);
            slot.vnet = m.meta;
            let mut ctx = ctx!(self);
            apply_decision(&mut ctx, std::mem::take(d), &m.key, &mut slot, m.in_port, m.depth);
            self.keep.push(slot);
            self.finish_packet();
        }
        done.len()
    }

    /// Flush outputs and release generated frames.
    pub fn flush(&mut self) {
        self.io.flush(&mut self.counters);
        self.keep.clear();
    }

    fn finish_packet(&mut self) {
        if !self.stale.is_empty() {
            self.table.invalidate_tags(&self.stale);
            self.stale.clear();
        }
        while let Some((key, f)) = self.installs.pop() {
            // A full table only costs a later upcall; TableStats counts it.
            let _ = self.install(&key, f);
        }
    }

    /// Run one frame from a local port through the pipeline.
    #[inline]
    pub fn process_port(&mut self, port: PortNo, slot: &mut Slot) {
        let c = self.counters.port(port);
        c.rx_packets += 1;
        c.rx_bytes += slot.len as u64;
        self.process(InPort::Port(port), slot);
    }

    /// Whether a tunnel message from outer source `src` may go on: `false`
    /// when the peer set is on and `src` is not in it, with its `datagrams`
    /// (`bytes` in all) counted as received and dropped
    /// ([`DropReason::TunnelUnknownSource`]). One hash probe.
    #[inline]
    pub fn tunnel_source_allowed(&mut self, src: Ipv4Addr, datagrams: u64, bytes: u64) -> bool {
        match &self.tunnel_peers {
            Some(peers) if !peers.contains(&src) => {
                self.counters.tunnel.rx_packets += datagrams;
                self.counters.tunnel.rx_bytes += bytes;
                self.counters.drops.add(DropReason::TunnelUnknownSource, datagrams);
                false
            }
            _ => true,
        }
    }

    /// Run one VXLAN datagram (header at `slot.start`) through the pipeline.
    #[inline]
    pub fn process_tunnel(&mut self, slot: &mut Slot) {
        self.process_tunnel_as(slot, None);
    }

    /// [`Self::process_tunnel`] for a plain datagram known to hold one GSO
    /// frame (`gso`: its offload state, [`crate::offload::inner_gso`]).
    pub fn process_tunnel_as(&mut self, slot: &mut Slot, gso: Option<VnetHdr>) {
        self.counters.tunnel.rx_packets += 1;
        self.counters.tunnel.rx_bytes += slot.len as u64;
        let (vni, vnet) = match crate::vxlan::decode(slot.frame()) {
            Ok(x) => x,
            Err(_) => {
                self.counters.drop(DropReason::TunnelMalformed);
                return;
            }
        };
        slot.start += crate::vxlan::VXLAN_HDR_LEN;
        slot.len -= crate::vxlan::VXLAN_HDR_LEN;
        slot.vnet = vnet;
        // A plain frame may still carry a kernel VTEP's partial checksum,
        // or be a whole TSO frame of one.
        if !vnet.is_offloaded() {
            if let Some(g) = gso.or_else(|| crate::offload::inner_gso(slot.frame(), None)) {
                slot.vnet = g;
            } else if crate::offload::complete_unfinished(slot.frame_mut()) {
                self.counters.tunnel_checksums_completed += 1;
            }
        }
        if let Some(&p) = self.tunnel_ports.get(&vni) {
            if slot.len < 14 {
                self.counters.drop(DropReason::Truncated);
            } else if !self.io.output(p, slot, &mut self.counters) {
                self.counters.drop(DropReason::UnknownPort);
            }
            return;
        }
        self.process(InPort::Tunnel(vni), slot);
    }

    /// A UDP GRO message (`slot.seg` > 0) whose datagrams all carry the
    /// same small UDP/IPv4 flow to a VNI bound to a local port: write it to
    /// that port as one UDP GSO frame (virtio `GSO_UDP_L4`) instead of one
    /// frame per datagram. The receiving guest's stack then segments it in
    /// one softirq pass, with one wake-up of the reader instead of one per
    /// datagram (which also preempted this thread in the middle of every
    /// `sendmmsg`). Returns false, leaving the slot untouched, when the
    /// message does not qualify; the caller then processes it datagram by
    /// datagram. See [`coalesce_udp`] for the conditions.
    pub fn process_tunnel_gro(&mut self, slot: &mut Slot) -> bool {
        let (base, total, seg) = (slot.start, slot.len, slot.seg);
        if seg == 0 || total <= seg {
            return false;
        }
        let Ok((vni, vnet)) = crate::vxlan::decode(slot.frame()) else { return false };
        let Some(&port) = self.tunnel_ports.get(&vni) else { return false };
        // Guests' small UDP sends usually arrive with a partial checksum.
        let partial = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        if vnet != VnetHdr::default() && vnet != partial {
            return false;
        }
        let buf = &mut slot.buf[base..base + total];
        // Every datagram must have the same VXLAN header (VNI, no offload).
        let hdr: [u8; crate::vxlan::VXLAN_HDR_LEN] =
            match buf[..crate::vxlan::VXLAN_HDR_LEN].try_into() {
                Ok(h) => h,
                Err(_) => return false,
            };
        if !buf.chunks(seg).all(|d| {
            d.len() > crate::vxlan::VXLAN_HDR_LEN && d[..crate::vxlan::VXLAN_HDR_LEN] == hdr
        }) {
            return false;
        }
        let Some((len, vnet)) =
            coalesce_udp(buf, seg, crate::vxlan::VXLAN_HDR_LEN, vnet == partial)
        else {
            return false;
        };
        let n = total.div_ceil(seg) as u64;
        self.counters.tunnel.rx_packets += n;
        self.counters.tunnel.rx_bytes += total as u64;
        slot.start = base + crate::vxlan::VXLAN_HDR_LEN;
        slot.len = len;
        slot.vnet = vnet;
        slot.seg = 0;
        if self.io.output(port, slot, &mut self.counters) {
            // The port counts the frame when sent; count the datagrams in it.
            self.counters.port(port).tx_packets += n - 1;
        } else {
            self.counters.drops.add(DropReason::UnknownPort, n);
        }
        true
    }

    fn process(&mut self, in_port: InPort, slot: &mut Slot) {
        let key = match FlowKey::extract(slot.frame(), in_port) {
            Ok(k) => k,
            Err(e) => {
                self.counters.drop(DropReason::Malformed);
                if let Some(i) = ParseError::ALL.iter().position(|x| *x == e) {
                    self.counters.parse[i] += 1;
                }
                return;
            }
        };
        let hit = self.table.lookup(&key);
        let mut ctx = ctx!(self);
        match hit {
            Some((id, _)) => {
                self.table.account(id, slot.len, key.tcp_flags, self.now_ms);
                let actions = match self.table.get(id) {
                    Some(f) => f.actions.as_slice(),
                    None => &[],
                };
                if actions.iter().all(|a| !a.is_emit()) {
                    ctx.counters.drop(DropReason::FlowDrop);
                } else {
                    exec(&mut ctx, actions, slot, in_port, 0);
                }
            }
            None => {
                let now_ns = ctx.epoch.elapsed().as_nanos() as u64;
                let budget = ctx.limiter.budget(in_port, now_ns);
                if budget == Budget::Limited {
                    ctx.counters.drop(DropReason::UpcallRateLimited);
                    if let InPort::Port(p) = in_port {
                        ctx.counters.port(p).upcall_limited += 1;
                    }
                    return;
                }
                ctx.counters.upcalls += 1;
                if let InPort::Port(p) = in_port {
                    let c = ctx.counters.port(p);
                    c.upcalls += 1;
                    c.upcall_borrowed += u64::from(budget == Budget::Borrowed);
                }
                if let Some(w) = ctx.workers.as_mut() {
                    let m = Miss::new(key, slot.frame().to_vec(), in_port, None, 0, slot.vnet);
                    if !w.submit(m) {
                        ctx.counters.drop(DropReason::MissBacklog);
                    }
                    return;
                }
                match ctx.handler.as_mut() {
                    None => ctx.counters.drop(match in_port {
                        InPort::Tunnel(_) => DropReason::UnknownTunnelKey,
                        InPort::Port(_) => DropReason::NoHandler,
                    }),
                    Some(h) => {
                        let d = h.on_miss(&key, slot.frame(), in_port);
                        apply_decision(&mut ctx, d, &key, slot, in_port, 0);
                    }
                }
            }
        }
        if !self.installs.is_empty() || !self.stale.is_empty() {
            self.finish_packet();
        }
    }
}

fn apply_decision<I: Io>(
    ctx: &mut Ctx<'_, I>,
    d: MissDecision,
    key: &FlowKey,
    slot: &mut Slot,
    in_port: InPort,
    depth: u8,
) {
    // No reverse-NAT table here, so no split flow is ever asked for.
    let MissDecision { install, execute, generated, invalidate, recirc: _ } = d;
    ctx.stale.extend(invalidate);
    if let Some(f) = install {
        ctx.installs.push((*key, f));
    }
    if execute.iter().any(Action::is_emit) {
        exec(ctx, execute.as_slice(), slot, in_port, depth);
    } else {
        ctx.counters.drop(match in_port {
            InPort::Tunnel(_) => DropReason::UnknownTunnelKey,
            InPort::Port(_) => DropReason::UpcallDrop,
        });
    }
    for g in generated {
        emit_generated(ctx, &g.frame, &g.actions, depth);
    }
}

fn emit_generated<I: Io>(ctx: &mut Ctx<'_, I>, frame: &[u8], actions: &Actions, depth: u8) {
    let mut s = Slot::from_frame(frame);
    exec(ctx, actions.as_slice(), &mut s, InPort::Port(0), depth);
    ctx.keep.push(s);
}

fn exec<I: Io>(
    ctx: &mut Ctx<'_, I>,
    actions: &[Action],
    slot: &mut Slot,
    in_port: InPort,
    depth: u8,
) {
    let mut queued = false;
    for a in actions {
        match *a {
            Action::Output(p) => {
                if ctx.io.output(p, slot, ctx.counters) {
                    queued = true;
                } else {
                    ctx.counters.drop(DropReason::UnknownPort);
                }
            }
            Action::Tunnel { dst, key }
                if slot.vnet.is_offloaded() && !ctx.tunnel_offload.to(dst) =>
            {
                tunnel_resolved(ctx, dst, key, slot);
            }
            Action::Tunnel { dst, key } => match crate::vxlan::encode(key, &slot.vnet) {
                Ok(h) => {
                    ctx.io.tunnel(dst, h, slot, ctx.counters);
                    queued = true;
                }
                Err(_) => ctx.counters.drop(DropReason::OffloadUnsupported),
            },
            Action::Userspace(reason) => {
                if depth >= MAX_DEPTH {
                    ctx.counters.drop(DropReason::Loop);
                    continue;
                }
                // The agent gets a copy; the original goes on with the list.
                let mut copy = Slot::from_frame(slot.frame());
                copy.vnet = slot.vnet;
                let key = match FlowKey::extract(copy.frame(), in_port) {
                    Ok(k) => k,
                    Err(_) => {
                        ctx.counters.drop(DropReason::Malformed);
                        continue;
                    }
                };
                ctx.counters.upcalls += 1;
                if let Some(w) = ctx.workers.as_mut() {
                    let m = Miss::new(
                        key,
                        copy.frame().to_vec(),
                        in_port,
                        Some(reason),
                        depth + 1,
                        copy.vnet,
                    );
                    if !w.submit(m) {
                        ctx.counters.drop(DropReason::MissBacklog);
                    }
                } else if let Some(h) = ctx.handler.as_mut() {
                    let d = h.on_userspace(reason, &key, copy.frame(), in_port);
                    apply_decision(ctx, d, &key, &mut copy, in_port, depth + 1);
                    ctx.keep.push(copy);
                } else {
                    ctx.counters.drop(DropReason::NoHandler);
                }
            }
            _ => {
                if queued {
                    // Earlier outputs reference this buffer: send them
                    // before the frame changes under them.
                    ctx.io.flush(ctx.counters);
                    queued = false;
                }
                if !rewrite(slot, a) {
                    ctx.counters.drop(DropReason::RewriteFailed);
                    return;
                }
            }
        }
    }
}

/// Tunnel what an offloaded frame stands for, as plain frames with a plain
/// RFC 7348 header ([`crate::offload`]). They are built in a slot of their
/// own, kept until the flush, so the frame itself stays as it was for the
/// actions after this one (a local output keeps its offload).
fn tunnel_resolved<I: Io>(ctx: &mut Ctx<'_, I>, dst: Ipv4Addr, key: u32, slot: &Slot) {
    let (mut buf, mut ends) = (Vec::new(), Vec::new());
    if crate::offload::resolve(slot.frame(), &slot.vnet, &mut buf, &mut ends).is_err() {
        ctx.counters.drop(DropReason::OffloadUnsupported);
        return;
    }
    let Ok(h) = crate::vxlan::encode(key, &VnetHdr::default()) else {
        ctx.counters.drop(DropReason::OffloadUnsupported);
        return;
    };
    ctx.counters.tunnel_offload_resolved += 1;
    let mut out = Slot::from_vec(buf);
    let mut at = 0;
    for end in ends {
        (out.start, out.len) = (at, end - at);
        ctx.io.tunnel(dst, h, &out, ctx.counters);
        at = end;
    }
    ctx.keep.push(out);
}

/// Apply one rewrite action to a slot, in place; false when it does not
/// apply to this frame (the caller counts the drop).
fn rewrite(slot: &mut Slot, a: &Action) -> bool {
    match *a {
        Action::PushVlan { .. } => {
            // Grow into the headroom, but not below `floor`: those bytes
            // may belong to a frame already queued for output.
            let Some(start) = slot.start.checked_sub(VLAN_TAG_SIZE).filter(|s| *s >= slot.floor)
            else {
                return false;
            };
            let end = slot.start + slot.len;
            if midonet_flow::push_vlan_in_place(&mut slot.buf[start..end], a).is_err() {
                return false;
            }
            slot.start = start;
            slot.len += VLAN_TAG_SIZE;
            shift_vnet(&mut slot.vnet, VLAN_TAG_SIZE as i32);
            true
        }
        Action::PopVlan => {
            if midonet_flow::pop_vlan_in_place(slot.frame_mut()).is_err() {
                return false;
            }
            slot.start += VLAN_TAG_SIZE;
            slot.len -= VLAN_TAG_SIZE;
            shift_vnet(&mut slot.vnet, -(VLAN_TAG_SIZE as i32));
            true
        }
        _ => {
            let partial = (slot.vnet.flags & VnetHdr::F_NEEDS_CSUM != 0)
                .then_some(usize::from(slot.vnet.csum_start));
            midonet_flow::set_field(slot.frame_mut(), a, partial).is_ok()
        }
    }
}

/// Merge datagrams laid out every `seg` bytes in `buf` (each behind `lead`
/// bytes of encapsulation, the last possibly shorter) into one UDP GSO
/// frame starting at `buf[lead]`, in place. Returns its length and virtio
/// header, or `None` (with `buf` untouched) unless every datagram is an
/// untagged IPv4/UDP frame without options or fragmentation, with the same
/// Ethernet, IP and UDP header as the first except for length, ID and
/// checksums, consecutive IP IDs unless DF is set (segmentation numbers
/// them consecutively from the first), a valid or
/// absent UDP checksum, equal payload sizes (the last may be shorter) and
/// at least two datagrams. `partial`: the datagrams' UDP checksums are
/// partial (offloaded), so not checked. The merged frame carries a partial checksum, as
/// the guest's own UDP GSO sends would.
pub fn coalesce_udp(
    buf: &mut [u8],
    seg: usize,
    lead: usize,
    partial: bool,
) -> Option<(usize, VnetHdr)> {
    const L3: usize = ETH_HEADER_SIZE;
    const L4: usize = L3 + ipv4::HEADER_SIZE;
    const HDRS: usize = L4 + udp::HEADER_SIZE;
    // Frame offsets of the header fields that differ between datagrams:
    // the IP total length and identification, the IP checksum, the UDP
    // length and checksum. Everything else must be equal.
    const IP_LENGTH_ID: std::ops::Range<usize> =
        L3 + ipv4::field::LENGTH.start..L3 + ipv4::field::IDENT.end;
    const IP_CHECKSUM: std::ops::Range<usize> =
        L3 + ipv4::field::CHECKSUM.start..L3 + ipv4::field::CHECKSUM.end;
    const UDP_LENGTH_CHECKSUM: usize = L4 + udp::field::LENGTH.start;
    let total = buf.len();
    if seg <= lead + HDRS || total <= seg {
        return None;
    }
    let n = total.div_ceil(seg);
    let first = &buf[lead..seg];
    let pl = first.len() - HDRS;
    let ip = Ipv4Packet::new_unchecked(&first[L3..]);
    if EthernetFrame::new_unchecked(first).ethertype() != ETHERTYPE_IPV4
        || ip.version() != 4
        || ip.header_len() != ipv4::HEADER_SIZE
        || ip.protocol() != ipv4::PROTO_UDP
        || ip.more_frags()
        || ip.frag_offset() != 0
    {
        return None;
    }
    let id0 = ip.ident();
    // With DF set the datagrams are atomic and their IDs carry no meaning
    // (RFC 6864 §4.1); otherwise segmentation must recreate them.
    let df = ip.dont_frag();
    for k in 0..n {
        // A last datagram shorter than the encapsulation is refused, not
        // sliced past its end (the `vxlan` fuzz target's replay found it).
        let d = buf.get(k * seg + lead..((k + 1) * seg).min(total))?;
        let this_pl = d.len().checked_sub(HDRS)?;
        if this_pl == 0 || this_pl > pl || (k + 1 < n && this_pl != pl) {
            return None;
        }
        if d[..IP_LENGTH_ID.start] != first[..IP_LENGTH_ID.start]
            || d[IP_LENGTH_ID.end..IP_CHECKSUM.start] != first[IP_LENGTH_ID.end..IP_CHECKSUM.start]
            || d[IP_CHECKSUM.end..UDP_LENGTH_CHECKSUM]
                != first[IP_CHECKSUM.end..UDP_LENGTH_CHECKSUM]
        {
            return None;
        }
        let dip = Ipv4Packet::new_unchecked(&d[L3..]);
        let dudp = UdpPacket::new_unchecked(&d[L4..]);
        if usize::from(dip.total_len()) != d.len() - L3 || usize::from(dudp.len()) != d.len() - L4 {
            return None;
        }
        if (!df && dip.ident() != id0.wrapping_add(k as u16)) || !dip.verify_checksum() {
            return None;
        }
        let pseudo = dip.pseudo_header_sum((d.len() - L4) as u16);
        if !partial && dudp.checksum() != 0 && fold(sum(pseudo, &d[L4..])) != 0xffff {
            return None;
        }
    }
    let udp_len = udp::HEADER_SIZE + (total - (n - 1) * seg - lead - HDRS) + (n - 1) * pl;
    if L4 + udp_len > 65_535 {
        return None;
    }
    // Move payloads down behind the first one: destinations never pass
    // their sources, so in increasing order nothing is overwritten early.
    let mut at = lead + HDRS + pl;
    for k in 1..n {
        let from = k * seg + lead + HDRS;
        let end = ((k + 1) * seg).min(total);
        buf.copy_within(from..end, at);
        at += end - from;
    }
    let f = &mut buf[lead..lead + L4 + udp_len];
    let mut ip = Ipv4Packet::new_unchecked(&mut f[L3..]);
    ip.set_total_len((ipv4::HEADER_SIZE + udp_len) as u16);
    ip.fill_checksum();
    let pseudo = ip.pseudo_header_sum(udp_len as u16);
    let mut udp = UdpPacket::new_unchecked(&mut f[L4..]);
    udp.set_len(udp_len as u16);
    // Partial: the folded, uncomplemented pseudo-header sum.
    udp.set_checksum(fold(pseudo));
    let vnet = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_UDP_L4,
        hdr_len: HDRS as u16,
        gso_size: pl as u16,
        csum_start: L4 as u16,
        csum_offset: udp::field::CHECKSUM.start as u16,
    };
    Some((L4 + udp_len, vnet))
}

fn shift_vnet(v: &mut VnetHdr, by: i32) {
    if v.flags & VnetHdr::F_NEEDS_CSUM != 0 {
        v.csum_start = (i32::from(v.csum_start) + by) as u16;
    }
    if v.hdr_len != 0 {
        v.hdr_len = (i32::from(v.hdr_len) + by) as u16;
    }
}

impl Slot {
    /// A slot holding a copy of `frame` (for generated packets).
    pub fn from_frame(frame: &[u8]) -> Slot {
        let mut buf = vec![0u8; HEADROOM + frame.len()].into_boxed_slice();
        buf[HEADROOM..].copy_from_slice(frame);
        Slot {
            buf,
            start: HEADROOM,
            len: frame.len(),
            vnet: VnetHdr::default(),
            floor: 0,
            seg: 0,
            src: Ipv4Addr::UNSPECIFIED,
        }
    }

    /// A slot owning `buf` with no headroom, its frame the whole of it
    /// (frames built elsewhere, e.g. software segments).
    pub fn from_vec(buf: Vec<u8>) -> Slot {
        let len = buf.len();
        Slot {
            buf: buf.into_boxed_slice(),
            start: 0,
            len,
            vnet: VnetHdr::default(),
            floor: 0,
            seg: 0,
            src: Ipv4Addr::UNSPECIFIED,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use midonet_flow::{Action, MacAddr};

    use super::*;
    use midonet_wire::checksum::checksum as inet_checksum;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    /// Ethernet + IPv4 + TCP with valid checksums.
    fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = crate::testing::udp_frame(A, B, src, dst, sport, dport, &[]);
        f.truncate(34);
        f[23] = 6; // protocol
        let total = (20 + 20 + payload.len()) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = inet_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        f.extend_from_slice(&tcp);
        f.extend_from_slice(payload);
        let c = l4_checksum(&f);
        f[50..52].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// Full TCP checksum of an IPv4 frame (field included as is).
    fn l4_sum(f: &[u8]) -> u16 {
        let mut p = Vec::new();
        p.extend_from_slice(&f[26..34]);
        p.extend_from_slice(&[0, 6]);
        p.extend_from_slice(&((f.len() - 34) as u16).to_be_bytes());
        p.extend_from_slice(&f[34..]);
        inet_checksum(&p)
    }

    fn l4_checksum(f: &[u8]) -> u16 {
        let mut g = f.to_vec();
        g[50..52].copy_from_slice(&[0, 0]);
        l4_sum(&g)
    }

    /// The slot path (offsets, headroom, virtio header kept in step) gives
    /// the bytes `midonet_flow::apply_action` gives on a `Vec`.
    #[test]
    fn slot_rewrites_match_the_flow_crate() {
        let base = tcp_frame(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1000,
            80,
            b"hello world",
        );
        for a in [
            Action::SetTtl(7),
            Action::SetTos(0x2e),
            Action::SetIpv4Src(Ipv4Addr::new(192, 168, 7, 9)),
            Action::SetIpv4Dst(Ipv4Addr::new(172, 16, 0, 200)),
            Action::SetL4Src(4242),
            Action::SetL4Dst(8080),
            Action::SetEthSrc(B),
            Action::SetEthDst(A),
        ] {
            let mut slot = Slot::from_frame(&base);
            assert!(rewrite(&mut slot, &a), "{a:?}");
            let mut oracle = base.clone();
            midonet_flow::apply_action(&mut oracle, &a).expect("oracle");
            assert_eq!(slot.frame(), &oracle[..], "{a:?}");
            assert_eq!(inet_checksum(&slot.frame()[14..34]), 0, "ip header checksum after {a:?}");
            assert_eq!(l4_sum(slot.frame()), 0, "tcp checksum after {a:?}");
        }
        // A tag pushed into the headroom, a rewrite behind it, the tag popped.
        let mut slot = Slot::from_frame(&base);
        slot.vnet = VnetHdr { flags: VnetHdr::F_NEEDS_CSUM, csum_start: 34, ..VnetHdr::default() };
        let mut oracle = base.clone();
        for a in [Action::PushVlan { vid: 42, pcp: 3 }, Action::SetTtl(9), Action::PopVlan] {
            assert!(rewrite(&mut slot, &a), "{a:?}");
            midonet_flow::apply_action(&mut oracle, &a).expect("oracle");
            assert_eq!(slot.frame(), &oracle[..], "{a:?}");
            if matches!(a, Action::PushVlan { .. }) {
                assert_eq!(
                    (slot.start, slot.vnet.csum_start),
                    (HEADROOM - 4, 38),
                    "moved with the tag"
                );
            }
        }
        assert_eq!((slot.start, slot.len, slot.vnet.csum_start), (HEADROOM, base.len(), 34));
        // IPv6 and ICMP ids: in place too now.
        for (desc, a) in [
            ("ip6.src=2001:db8::1,ip6.dst=2001:db8::2,tcp.dst=80", Action::SetTtl(5)),
            ("ip6.src=2001:db8::1,ip6.dst=2001:db8::2,udp.dst=53", Action::SetL4Dst(5353)),
            ("ip4.src=10.0.0.1,ip4.dst=10.0.0.2,icmp4.type=8,icmp4.id=7", Action::SetIcmpId(99)),
        ] {
            let k: FlowKey = desc.parse().expect("desc");
            let mut f = Vec::new();
            k.to_frame(b"payload", &mut f);
            let mut slot = Slot::from_frame(&f);
            assert!(rewrite(&mut slot, &a), "{desc}: {a:?}");
            midonet_flow::apply_action(&mut f, &a).expect("oracle");
            assert_eq!(slot.frame(), &f[..], "{desc}: {a:?}");
        }
    }

    #[test]
    fn a_push_never_grows_below_the_floor() {
        let base = tcp_frame(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 2, b"x");
        let mut slot = Slot::from_frame(&base);
        slot.floor = slot.start - 3;
        assert!(!rewrite(&mut slot, &Action::PushVlan { vid: 1, pcp: 0 }));
        assert_eq!((slot.start, slot.frame()), (HEADROOM, &base[..]), "left alone");
        slot.floor = slot.start - 4;
        assert!(rewrite(&mut slot, &Action::PushVlan { vid: 1, pcp: 0 }));
    }

    #[test]
    fn partial_checksum_frames_stay_completable() {
        // What a VM hands over with TSO: the TCP field holds the folded,
        // uncomplemented pseudo-header sum; the NIC completes it later.
        let partial_of = |f: &[u8]| {
            let mut p = Vec::new();
            p.extend_from_slice(&f[26..34]);
            p.extend_from_slice(&[0, 6]);
            p.extend_from_slice(&((f.len() - 34) as u16).to_be_bytes());
            !inet_checksum(&p)
        };
        let mut f = tcp_frame(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1000,
            80,
            b"segment data",
        );
        let p = partial_of(&f);
        f[50..52].copy_from_slice(&p.to_be_bytes());
        let mut slot = Slot::from_frame(&f);
        slot.vnet = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        // The Vec path (midonet_flow::apply_action_partial) must agree.
        let mut oracle = f.clone();
        for a in [
            Action::SetIpv4Src(Ipv4Addr::new(203, 0, 113, 5)),
            Action::SetL4Dst(9999),
            Action::SetTtl(3),
        ] {
            assert!(rewrite(&mut slot, &a));
            midonet_flow::apply_action_partial(&mut oracle, &a, Some(34)).expect("oracle");
            assert_eq!(
                slot.frame(),
                &oracle[..],
                "in place and copying rewrites agree after {a:?}"
            );
        }
        let out = slot.frame().to_vec();
        assert_eq!(
            u16::from_be_bytes([out[50], out[51]]),
            partial_of(&out),
            "still the pseudo-header sum"
        );
        assert_eq!(inet_checksum(&out[14..34]), 0);
        // Completing it (as the NIC would) gives a valid segment.
        // The NIC sums from csum_start (the TCP header, field included) to the end.
        let mut done = out.clone();
        let c = inet_checksum(&done[34..]);
        done[50..52].copy_from_slice(&c.to_be_bytes());
        assert_eq!(l4_sum(&done), 0);
        assert_eq!(&done[26..30], &[203, 0, 113, 5]);
    }

    /// Datagrams `k` of one flow with IP id `id0 + k`, payloads of `pl`
    /// bytes (the last `last`), each behind 8 bytes of "VXLAN", laid out
    /// every `seg` bytes as UDP GRO hands them over.
    fn gro_message(n: usize, pl: usize, last: usize, id0: u16) -> (Vec<u8>, usize, Vec<Vec<u8>>) {
        let (a, b) =
            (midonet_flow::MacAddr([2, 0, 0, 0, 0, 1]), midonet_flow::MacAddr([2, 0, 0, 0, 0, 2]));
        let mut dgrams = Vec::new();
        for k in 0..n {
            let len = if k + 1 == n { last } else { pl };
            let payload: Vec<u8> = (0..len).map(|i| (k * 31 + i) as u8).collect();
            let mut f = crate::testing::udp_frame(
                a,
                b,
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                5000,
                9000,
                &payload,
            );
            f[18..20].copy_from_slice(&id0.wrapping_add(k as u16).to_be_bytes());
            f[24..26].fill(0);
            let c = inet_checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            dgrams.push(f);
        }
        let seg = 8 + 42 + pl;
        let mut buf = Vec::new();
        for f in &dgrams {
            buf.extend_from_slice(&[0x08, 0, 0, 0, 0, 1, 2, 0]);
            buf.extend_from_slice(f);
        }
        (buf, seg, dgrams)
    }

    #[test]
    fn gro_messages_of_one_udp_flow_become_one_gso_frame() {
        let (mut buf, seg, dgrams) = gro_message(5, 18, 11, 0xfffe);
        let (len, v) = coalesce_udp(&mut buf, seg, 8, false).expect("coalesces");
        assert_eq!(
            (v.gso_type, v.gso_size, v.hdr_len, v.csum_start, v.csum_offset),
            (VnetHdr::GSO_UDP_L4, 18, 42, 34, 6)
        );
        let f = &buf[8..8 + len];
        assert_eq!(len, 42 + 4 * 18 + 11);
        assert_eq!(inet_checksum(&f[14..34]), 0, "ip header checksum");
        // Segment it the way the receiving kernel does and compare.
        for (k, orig) in dgrams.iter().enumerate() {
            let pl = &f[42 + k * 18..(42 + (k + 1) * 18).min(len)];
            assert_eq!(pl, &orig[42..], "payload {k}");
            assert_eq!(&f[..14], &orig[..14]);
            assert_eq!(&f[26..38], &orig[26..38], "addresses and ports");
            assert_eq!(
                u16::from_be_bytes([f[18], f[19]]).wrapping_add(k as u16),
                u16::from_be_bytes([orig[18], orig[19]])
            );
        }
        // Partial checksum: the folded pseudo-header sum of the whole datagram.
        let mut p = Vec::from(&f[26..34]);
        p.extend_from_slice(&[0, 17]);
        p.extend_from_slice(&((len - 34) as u16).to_be_bytes());
        assert_eq!(u16::from_be_bytes([f[40], f[41]]), !inet_checksum(&p));
    }

    #[test]
    fn mixed_or_odd_gro_messages_are_left_alone() {
        // Non-consecutive IDs without DF.
        let (mut buf, seg, _) = gro_message(3, 18, 18, 7);
        buf[seg + 8 + 18] ^= 1;
        let before = buf.clone();
        assert!(coalesce_udp(&mut buf, seg, 8, false).is_none());
        assert_eq!(buf, before);
        // ...but with DF any IDs go.
        let (mut buf, seg, _) = gro_message(3, 18, 18, 7);
        for k in 0..3 {
            let at = k * seg + 8;
            buf[at + 18..at + 20].fill(0);
            buf[at + 20] = 0x40;
            buf[at + 24..at + 26].fill(0);
            let c = inet_checksum(&buf[at + 14..at + 34]);
            buf[at + 24..at + 26].copy_from_slice(&c.to_be_bytes());
        }
        assert!(coalesce_udp(&mut buf, seg, 8, false).is_some());
        // Another destination port in the middle.
        let (mut buf, seg, _) = gro_message(3, 18, 18, 7);
        buf[seg + 8 + 37] ^= 1;
        assert!(coalesce_udp(&mut buf, seg, 8, false).is_none());
        // A bad UDP checksum.
        let (mut buf, seg, _) = gro_message(3, 18, 18, 7);
        buf[seg + 8 + 40] = 0x12;
        assert!(coalesce_udp(&mut buf, seg, 8, false).is_none());
        // One datagram only.
        let (mut buf, seg, _) = gro_message(1, 18, 18, 7);
        assert!(coalesce_udp(&mut buf, seg, 8, false).is_none());
        // A last datagram shorter than the encapsulation: refused, not a
        // panic (found by the vxlan fuzz target's replay).
        let (mut buf, seg, _) = gro_message(2, 18, 18, 7);
        buf.truncate(seg + 3);
        let before = buf.clone();
        assert!(coalesce_udp(&mut buf, seg, 8, false).is_none());
        assert_eq!(buf, before);
    }

    #[test]
    fn rewrites_that_do_not_apply_fail() {
        let mut slot = Slot::from_frame(&[0u8; 60]);
        assert!(!rewrite(&mut slot, &Action::SetTtl(1)), "not IP");
        assert!(!rewrite(&mut slot, &Action::PopVlan), "untagged");
        let mut short = Slot::from_frame(&[0u8; 10]);
        assert!(!rewrite(&mut short, &Action::SetEthDst(A)), "shorter than Ethernet");
        assert!(!rewrite(&mut short, &Action::PushVlan { vid: 1, pcp: 0 }));
    }
}
