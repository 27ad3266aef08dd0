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
//!   a rewrite the in-place IPv4 code does not cover (IPv6, ICMP id, SCTP),
//!   which goes through `midonet_flow::apply_action_partial` (told where a
//!   partial checksum starts, so both paths agree) on a reused scratch
//!   `Vec` (that API takes a `Vec`).

use std::net::Ipv4Addr;
use std::time::Instant;

use hashbrown::HashMap;
use midonet_flow::{Action, Actions, FlowKey, FlowMask, InPort, ParseError};

use crate::sys::{Slot, VnetHdr, HEADROOM};
use crate::table::{FlowSpec, FlowTable, InsertError, TableConfig};
use crate::{
    DpError, DpStats, DropCounters, DropReason, FlowId, FlowInfo, FlowInstall, MissDecision,
    PortCounters, PortNo, PortStats, UpcallHandler,
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
        let spec = FlowSpec {
            mask: f.mask,
            actions: f.actions,
            tags: f.tags,
            idle_timeout_ms: f.idle_timeout_ms,
        };
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
            parse_errors: ParseError::ALL
                .iter()
                .copied()
                .zip(self.counters.parse.iter().copied())
                .collect(),
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

fn apply_decision<I: Io>(
    ctx: &mut Ctx<'_, I>,
    d: MissDecision,
    key: &FlowKey,
    slot: &mut Slot,
    in_port: InPort,
    depth: u8,
) {
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
        Action::SetEthDst(_) | Action::SetEthSrc(_) | Action::PushVlan { .. } | Action::PopVlan => {
            Err(())
        }
        _ => {
            match rewrite_ipv4_in_place(slot, a) {
                InPlace::Done => return Ok(()),
                InPlace::Failed => return Err(()),
                InPlace::NotHandled => {}
            }
            scratch.clear();
            scratch.extend_from_slice(slot.frame());
            let partial = (slot.vnet.flags & VnetHdr::F_NEEDS_CSUM != 0)
                .then_some(slot.vnet.csum_start as usize);
            midonet_flow::apply_action_partial(scratch, a, partial).map_err(drop)?;
            if scratch.len() != slot.len {
                return Err(());
            }
            slot.frame_mut().copy_from_slice(scratch);
            Ok(())
        }
    }
}

enum InPlace {
    Done,
    Failed,
    NotHandled,
}

/// RFC 1624 eq. 3: checksum field `hc` after a 16-bit word changed.
fn csum_update16(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn csum_update32(hc: u16, old: u32, new: u32) -> u16 {
    let hc = csum_update16(hc, (old >> 16) as u16, (new >> 16) as u16);
    csum_update16(hc, old as u16, new as u16)
}

/// IPv4 set-field actions done in place, without copying the frame (a
/// routed 64 KB GSO frame has its TTL rewritten on every hop).
///
/// Offloaded frames (`NEEDS_CSUM` with the checksum starting at the L4
/// header) hold in the L4 checksum field the *uncomplemented* pseudo-header
/// sum; the NIC (or the receiving stack) completes it over the segment as
/// it then is. So an address change updates that sum in the other
/// direction (`!update(!p)`), and a port change needs no update at all.
/// The IPv4 header checksum is always complete and is updated normally.
fn rewrite_ipv4_in_place(slot: &mut Slot, a: &Action) -> InPlace {
    let partial_at =
        (slot.vnet.flags & VnetHdr::F_NEEDS_CSUM != 0).then_some(slot.vnet.csum_start as usize);
    let f = slot.frame_mut();
    let rd16 = |f: &[u8], at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    let (ethertype, l3) = match f.get(12..14) {
        Some([0x81, 0x00]) if f.len() >= 18 => (u16::from_be_bytes([f[16], f[17]]), 18),
        Some(t) => (u16::from_be_bytes([t[0], t[1]]), 14),
        None => return InPlace::NotHandled,
    };
    if ethertype != 0x0800 || f.len() < l3 + 20 || f[l3] >> 4 != 4 {
        return InPlace::NotHandled;
    }
    let ihl = usize::from(f[l3] & 0x0f) * 4;
    if ihl < 20 || f.len() < l3 + ihl {
        return InPlace::NotHandled;
    }
    let proto = f[l3 + 9];
    let later_fragment = rd16(f, l3 + 6) & 0x1fff != 0;
    let l4 = l3 + ihl;
    // (checksum offset, zero means "no checksum") for protocols whose
    // checksum covers the pseudo-header and ports.
    let l4_csum = match proto {
        6 if !later_fragment && f.len() >= l4 + 20 => Some((l4 + 16, false)),
        17 if !later_fragment && f.len() >= l4 + 8 => Some((l4 + 6, true)),
        _ => None,
    };
    let partial = partial_at == Some(l4);
    let set16 = |f: &mut [u8], at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_be_bytes());
    let fix_ip = |f: &mut [u8], old: u16, new: u16| {
        let c = csum_update16(rd16(f, l3 + 10), old, new);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    };
    match *a {
        Action::SetTtl(t) => {
            let old = rd16(f, l3 + 8);
            f[l3 + 8] = t;
            let new = rd16(f, l3 + 8);
            fix_ip(f, old, new);
            InPlace::Done
        }
        Action::SetTos(t) => {
            let old = rd16(f, l3);
            f[l3 + 1] = t;
            let new = rd16(f, l3);
            fix_ip(f, old, new);
            InPlace::Done
        }
        Action::SetIpv4Src(addr) | Action::SetIpv4Dst(addr) => {
            let at = if matches!(a, Action::SetIpv4Src(_)) { l3 + 12 } else { l3 + 16 };
            let old = u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
            let new = u32::from(addr);
            f[at..at + 4].copy_from_slice(&addr.octets());
            let c = csum_update32(rd16(f, l3 + 10), old, new);
            set16(f, l3 + 10, c);
            if let Some((ca, zero_is_none)) = l4_csum {
                let hc = rd16(f, ca);
                if partial {
                    set16(f, ca, !csum_update32(!hc, old, new));
                } else if !(zero_is_none && hc == 0) {
                    let mut c = csum_update32(hc, old, new);
                    if zero_is_none && c == 0 {
                        c = 0xffff;
                    }
                    set16(f, ca, c);
                }
            }
            InPlace::Done
        }
        Action::SetL4Src(p) | Action::SetL4Dst(p) => {
            let Some((ca, zero_is_none)) = l4_csum else {
                return if proto == 132 { InPlace::NotHandled } else { InPlace::Failed };
            };
            let at = if matches!(a, Action::SetL4Src(_)) { l4 } else { l4 + 2 };
            let old = rd16(f, at);
            set16(f, at, p);
            let hc = rd16(f, ca);
            if !(partial || (zero_is_none && hc == 0)) {
                let mut c = csum_update16(hc, old, p);
                if zero_is_none && c == 0 {
                    c = 0xffff;
                }
                set16(f, ca, c);
            }
            InPlace::Done
        }
        _ => InPlace::NotHandled,
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
    const L4: usize = 14 + 20;
    const HDRS: usize = L4 + 8;
    let total = buf.len();
    if seg <= lead + HDRS || total <= seg {
        return None;
    }
    let n = total.div_ceil(seg);
    let first = &buf[lead..seg];
    let pl = first.len() - HDRS;
    let rd16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    if first[12..14] != [0x08, 0x00]
        || first[14] != 0x45
        || first[23] != 17
        || rd16(first, 20) & 0x3fff != 0
    {
        return None;
    }
    let id0 = rd16(first, 18);
    // With DF set the datagrams are atomic and their IDs carry no meaning
    // (RFC 6864 §4.1); otherwise segmentation must recreate them.
    let df = rd16(first, 20) & 0x4000 != 0;
    for k in 0..n {
        // A last datagram shorter than the encapsulation is refused, not
        // sliced past its end (the `vxlan` fuzz target's replay found it).
        let d = buf.get(k * seg + lead..((k + 1) * seg).min(total))?;
        let this_pl = d.len().checked_sub(HDRS)?;
        if this_pl == 0 || this_pl > pl || (k + 1 < n && this_pl != pl) {
            return None;
        }
        // Same headers except tot_len (16..18), id (18..20), ip csum (24..26),
        // udp len (38..40), udp csum (40..42).
        if d[..16] != first[..16] || d[20..24] != first[20..24] || d[26..38] != first[26..38] {
            return None;
        }
        if usize::from(rd16(d, 16)) != d.len() - 14 || usize::from(rd16(d, 38)) != d.len() - L4 {
            return None;
        }
        if (!df && rd16(d, 18) != id0.wrapping_add(k as u16)) || inet_sum(&d[14..L4]) != 0xffff {
            return None;
        }
        let pseudo = pseudo_v4(d, (d.len() - L4) as u16);
        if !partial && rd16(d, 40) != 0 && inet_sum_from(pseudo, &d[L4..]) != 0xffff {
            return None;
        }
    }
    let udp_len = 8 + (total - (n - 1) * seg - lead - HDRS) + (n - 1) * pl;
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
    f[16..18].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    f[24..26].fill(0);
    let c = !inet_sum(&f[14..L4]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // Partial: the folded, uncomplemented pseudo-header sum.
    let p = inet_sum_from(pseudo_v4(f, udp_len as u16), &[]);
    f[40..42].copy_from_slice(&p.to_be_bytes());
    let vnet = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_UDP_L4,
        hdr_len: HDRS as u16,
        gso_size: pl as u16,
        csum_start: L4 as u16,
        csum_offset: 6,
    };
    Some((L4 + udp_len, vnet))
}

/// Unfolded one's-complement sum of the IPv4 pseudo-header of frame `f`
/// (addresses at 26..34) for UDP of length `len`.
fn pseudo_v4(f: &[u8], len: u16) -> u32 {
    let mut s = 17u32 + u32::from(len);
    for w in f[26..34].chunks_exact(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    s
}

/// One's-complement sum of `b` added to `init`, folded (not complemented).
fn inet_sum_from(init: u32, b: &[u8]) -> u16 {
    let mut s = u64::from(init);
    let mut ch = b.chunks_exact(2);
    for w in &mut ch {
        s += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = ch.remainder() {
        s += u64::from(*x) << 8;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn inet_sum(b: &[u8]) -> u16 {
    inet_sum_from(0, b)
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use midonet_flow::{Action, MacAddr};

    use super::*;
    use crate::testing::inet_checksum;

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

    #[test]
    fn in_place_ipv4_rewrites_match_the_flow_crate() {
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
        ] {
            let mut slot = Slot::from_frame(&base);
            assert!(matches!(rewrite_ipv4_in_place(&mut slot, &a), InPlace::Done), "{a:?}");
            let mut oracle = base.clone();
            midonet_flow::apply_action(&mut oracle, &a).expect("oracle");
            assert_eq!(slot.frame(), &oracle[..], "{a:?}");
            assert_eq!(inet_checksum(&slot.frame()[14..34]), 0, "ip header checksum after {a:?}");
            assert_eq!(l4_sum(slot.frame()), 0, "tcp checksum after {a:?}");
        }
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
        // The copying path (midonet_flow::apply_action_partial) must agree.
        let mut oracle = f.clone();
        for a in [
            Action::SetIpv4Src(Ipv4Addr::new(203, 0, 113, 5)),
            Action::SetL4Dst(9999),
            Action::SetTtl(3),
        ] {
            assert!(matches!(rewrite_ipv4_in_place(&mut slot, &a), InPlace::Done));
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
    fn non_ipv4_is_left_to_the_generic_path() {
        let mut slot = Slot::from_frame(&[0u8; 60]);
        assert!(matches!(
            rewrite_ipv4_in_place(&mut slot, &Action::SetTtl(1)),
            InPlace::NotHandled
        ));
    }
}
