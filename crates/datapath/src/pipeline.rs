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
//! * A flow hit never allocates: actions are read in place from the table
//!   and rewrites work inside the slot's headroom. The only copying path is
//!   an L3/L4 rewrite, which goes through `midonet_flow::apply_action` on a
//!   reused scratch `Vec` (that API takes a `Vec`).

use std::net::Ipv4Addr;
use std::time::Instant;

use hashbrown::HashMap;
use midonet_flow::{Action, Actions, FlowKey, FlowMask, InPort, ParseError};

use crate::sys::{Slot, VnetHdr, HEADROOM};
use crate::table::{FlowSpec, FlowTable, InsertError, TableConfig};
use crate::{
    DpError, DpStats, DropCounters, DropReason, FlowId, FlowInfo, FlowInstall, MissDecision, PortCounters,
    PortNo, PortStats, UpcallHandler,
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
    pub counters: Counters,
    pub handler: Option<Box<dyn UpcallHandler>>,
    pub io: I,
    scratch: Vec<u8>,
    keep: Vec<Slot>,
    installs: Vec<(FlowKey, FlowInstall)>,
    epoch: Instant,
    pub now_ms: u64,
}

/// The parts of [`Core`] the executor needs while the table is borrowed.
struct Ctx<'a, I: Io> {
    io: &'a mut I,
    counters: &'a mut Counters,
    handler: &'a mut Option<Box<dyn UpcallHandler>>,
    scratch: &'a mut Vec<u8>,
    keep: &'a mut Vec<Slot>,
    installs: &'a mut Vec<(FlowKey, FlowInstall)>,
}

impl<I: Io> Core<I> {
    pub fn new(io: I, handler: Option<Box<dyn UpcallHandler>>, table: TableConfig) -> Self {
        Core {
            table: FlowTable::new(table),
            names: Vec::new(),
            tunnel_ports: HashMap::new(),
            counters: Counters::default(),
            handler,
            io,
            scratch: Vec::new(),
            keep: Vec::new(),
            installs: Vec::new(),
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
        let spec = FlowSpec { mask: f.mask, actions: f.actions, tags: f.tags, idle_timeout_ms: f.idle_timeout_ms };
        self.table.insert(key, spec, self.now_ms).map_err(|InsertError::Full| DpError::TableFull)
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
            parse_errors: ParseError::ALL.iter().copied().zip(self.counters.parse.iter().copied()).collect(),
            table: self.table.stats(),
            upcalls: self.counters.upcalls,
            rx_batches: self.counters.rx_batches,
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
                idle_ms: self.now_ms.saturating_sub(f.last_used_ms),
            })
            .collect()
    }

    /// Packet-out from the agent.
    pub fn execute_generated(&mut self, frame: &[u8], actions: &Actions) {
        let mut ctx = Ctx {
            io: &mut self.io,
            counters: &mut self.counters,
            handler: &mut self.handler,
            scratch: &mut self.scratch,
            keep: &mut self.keep,
            installs: &mut self.installs,
        };
        emit_generated(&mut ctx, frame, actions, MAX_DEPTH);
        self.finish_packet();
    }

    /// Flush outputs and release generated frames.
    pub fn flush(&mut self) {
        self.io.flush(&mut self.counters);
        self.keep.clear();
    }

    fn finish_packet(&mut self) {
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

    /// Run one VXLAN datagram (header at `slot.start`) through the pipeline.
    #[inline]
    pub fn process_tunnel(&mut self, slot: &mut Slot) {
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
        let mut ctx = Ctx {
            io: &mut self.io,
            counters: &mut self.counters,
            handler: &mut self.handler,
            scratch: &mut self.scratch,
            keep: &mut self.keep,
            installs: &mut self.installs,
        };
        match hit {
            Some((id, _)) => {
                self.table.account(id, slot.len, self.now_ms);
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
                ctx.counters.upcalls += 1;
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
        if !self.installs.is_empty() {
            self.finish_packet();
        }
    }
}

fn apply_decision<I: Io>(ctx: &mut Ctx<'_, I>, d: MissDecision, key: &FlowKey, slot: &mut Slot, in_port: InPort, depth: u8) {
    let MissDecision { install, execute, generated } = d;
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

fn exec<I: Io>(ctx: &mut Ctx<'_, I>, actions: &[Action], slot: &mut Slot, in_port: InPort, depth: u8) {
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
                if let Some(h) = ctx.handler.as_mut() {
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
                if rewrite(slot, a, ctx.scratch).is_err() {
                    ctx.counters.drop(DropReason::RewriteFailed);
                    return;
                }
            }
        }
    }
}

/// Apply one rewrite action to a slot, in place where possible.
fn rewrite(slot: &mut Slot, a: &Action, scratch: &mut Vec<u8>) -> Result<(), ()> {
    const TPID: [u8; 2] = [0x81, 0x00];
    match *a {
        Action::SetEthDst(m) if slot.len >= 14 => {
            slot.frame_mut()[0..6].copy_from_slice(&m.0);
            Ok(())
        }
        Action::SetEthSrc(m) if slot.len >= 14 => {
            slot.frame_mut()[6..12].copy_from_slice(&m.0);
            Ok(())
        }
        Action::PushVlan { vid, pcp } if slot.len >= 14 && slot.start >= slot.floor + 4 => {
            let s = slot.start;
            slot.buf.copy_within(s..s + 12, s - 4);
            slot.start -= 4;
            slot.len += 4;
            let tci = (u16::from(pcp & 7) << 13) | (vid & 0x0fff);
            let f = slot.frame_mut();
            f[12..14].copy_from_slice(&TPID);
            f[14..16].copy_from_slice(&tci.to_be_bytes());
            shift_vnet(&mut slot.vnet, 4);
            Ok(())
        }
        Action::PopVlan if slot.len >= 18 && slot.frame()[12..14] == TPID => {
            let s = slot.start;
            slot.buf.copy_within(s..s + 12, s + 4);
            slot.start += 4;
            slot.len -= 4;
            shift_vnet(&mut slot.vnet, -4);
            Ok(())
        }
        Action::SetEthDst(_) | Action::SetEthSrc(_) | Action::PushVlan { .. } | Action::PopVlan => Err(()),
        _ => {
            scratch.clear();
            scratch.extend_from_slice(slot.frame());
            midonet_flow::apply_action(scratch, a).map_err(drop)?;
            if scratch.len() != slot.len {
                return Err(());
            }
            slot.frame_mut().copy_from_slice(scratch);
            Ok(())
        }
    }
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
        Slot { buf, start: HEADROOM, len: frame.len(), vnet: VnetHdr::default(), floor: 0, seg: 0 }
    }
}
