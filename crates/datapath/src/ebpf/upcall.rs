//! The packets the agent handles: misses the kernel sends up the ring
//! buffer (answered by the agent's table, the inline handler or the miss
//! workers), the decisions applied (flow first, then packet), and frames
//! executed by injecting them into the kernel with their action list, or
//! rewritten here when the kernel cannot run the actions.

use std::time::{Duration, Instant};

use midonet_flow::{Action, Actions, FlowKey, InPort, ParseError};

use super::{abi, io_err, kernel_sum, sys, State};
use crate::sys::VnetHdr;
use crate::workers::{Miss, Workers};
use crate::{DpError, DropReason, MissDecision, UpcallHandler};

/// Offload metadata for re-injecting a frame that came up through the
/// ring buffer: GSO frames are segmented (and their checksums completed)
/// when they leave; a TCP/UDP checksum that does not verify was a partial
/// (offloaded) one, so it is left for the kernel to complete.
fn infer_vnet(frame: &[u8], gso_size: u32) -> VnetHdr {
    let Ok(key) = FlowKey::extract(frame, InPort::Port(0)) else { return VnetHdr::default() };
    let l3 = if frame.get(12..14) == Some(&[0x81, 0x00][..]) { 18 } else { 14 };
    let (l4, v4) = match key.ethertype {
        0x0800 => (l3 + usize::from(frame[l3] & 0x0f) * 4, true),
        0x86dd if matches!(key.ip_proto, 6 | 17) => (l3 + 40, false),
        _ => return VnetHdr::default(),
    };
    let csum_offset = match key.ip_proto {
        6 => 16,
        17 => 6,
        _ => return VnetHdr::default(),
    };
    if key.ip_frag != midonet_flow::FragType::No || frame.len() < l4 + csum_offset + 2 {
        return VnetHdr::default();
    }
    let partial = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        csum_start: l4 as u16,
        csum_offset: csum_offset as u16,
        ..VnetHdr::default()
    };
    if gso_size > 0 {
        let (gso_type, hdr) = match (key.ip_proto, v4) {
            (6, true) => (VnetHdr::GSO_TCPV4, usize::from(frame[l4 + 12] >> 4) * 4),
            (6, false) => (VnetHdr::GSO_TCPV6, usize::from(frame[l4 + 12] >> 4) * 4),
            _ => (VnetHdr::GSO_UDP_L4, 8),
        };
        return VnetHdr {
            gso_type,
            gso_size: gso_size as u16,
            hdr_len: (l4 + hdr) as u16,
            ..partial
        };
    }
    if !v4 || (key.ip_proto == 17 && frame[l4 + 6..l4 + 8] == [0, 0]) {
        return VnetHdr::default();
    }
    let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
    let end = (l3 + total).min(frame.len());
    let mut sum: u64 = u64::from(key.ip_proto) + (end - l4) as u64;
    for w in frame[l3 + 12..l3 + 20].chunks_exact(2) {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    let seg = &frame[l4..end];
    let mut it = seg.chunks_exact(2);
    for w in &mut it {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = it.remainder() {
        sum += u64::from(*x) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if sum == 0xffff {
        VnetHdr::default()
    } else {
        partial
    }
}

impl State {
    pub(super) fn drop_pkt(&mut self, r: DropReason) {
        self.c.drops.add(r, 1);
    }

    /// Send `frame` into the kernel to run `actions` (already checked to
    /// be expressible there).
    fn inject(&mut self, frame: &[u8], vnet: &VnetHdr, actions: &[Action]) -> bool {
        match self.k.acquire_acts(&mut self.bpf.maps, actions, false) {
            Ok((id, gen)) => {
                let mark = id | (u32::from(gen) << 16);
                match self.inject.send(frame, vnet, mark) {
                    Ok(()) => {
                        self.c.injected += 1;
                        true
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "inject failed");
                        self.drop_pkt(DropReason::TxError);
                        false
                    }
                }
            }
            Err(_) => false,
        }
    }

    /// Execute `actions` on a frame the agent holds (an upcalled packet or
    /// a packet-out): in the kernel in one injection when it can run
    /// there, else rewrites here and one injection per output.
    pub(super) fn execute(
        &mut self,
        frame: &[u8],
        vnet: VnetHdr,
        actions: &[Action],
        in_port: InPort,
        depth: u8,
    ) {
        let kernel_ok =
            !actions.iter().any(|a| matches!(a, Action::Userspace(_) | Action::RevNatRecirc(_)))
                && abi::executable(frame, actions);
        if kernel_ok && self.inject(frame, &vnet, actions) {
            return;
        }
        let mut f = frame.to_vec();
        let mut v = vnet;
        for a in actions {
            match *a {
                Action::Output(_) | Action::Tunnel { .. } => {
                    let _ = self.inject(&f, &v, &[*a]) || {
                        self.drop_pkt(DropReason::UnknownPort);
                        true
                    };
                }
                // Only a split flow's first half, in the kernel, has the
                // bindings; a packet the agent holds gets its translation
                // from the handler's own actions.
                Action::RevNatRecirc(_) => self.drop_pkt(DropReason::FlowDrop),
                Action::Userspace(reason) => {
                    if depth >= 2 {
                        self.drop_pkt(DropReason::Loop);
                        continue;
                    }
                    let Ok(key) = FlowKey::extract(&f, in_port) else {
                        self.drop_pkt(DropReason::Malformed);
                        continue;
                    };
                    self.c.upcalls += 1;
                    if let Some(w) = self.workers.as_mut() {
                        let m = Miss::new(key, f.clone(), in_port, Some(reason), depth + 1, v);
                        if !w.submit(m) {
                            self.drop_pkt(DropReason::MissBacklog);
                        }
                        continue;
                    }
                    let Some(h) = self.handler.as_mut() else {
                        self.drop_pkt(DropReason::NoHandler);
                        continue;
                    };
                    let d = h.on_userspace(reason, &key, &f, in_port);
                    let copy = f.clone();
                    self.apply_decision(d, &key, &copy, v, in_port, depth + 1);
                }
                _ => {
                    let start =
                        (v.flags & VnetHdr::F_NEEDS_CSUM != 0).then_some(usize::from(v.csum_start));
                    if midonet_flow::apply_action_partial(&mut f, a, start).is_err() {
                        self.drop_pkt(DropReason::RewriteFailed);
                        return;
                    }
                    let shift: i32 = match a {
                        Action::PushVlan { .. } => 4,
                        Action::PopVlan => -4,
                        _ => 0,
                    };
                    if shift != 0 {
                        if v.flags & VnetHdr::F_NEEDS_CSUM != 0 {
                            v.csum_start = (i32::from(v.csum_start) + shift) as u16;
                        }
                        if v.hdr_len != 0 {
                            v.hdr_len = (i32::from(v.hdr_len) + shift) as u16;
                        }
                    }
                }
            }
        }
    }

    fn apply_decision(
        &mut self,
        d: MissDecision,
        key: &FlowKey,
        frame: &[u8],
        vnet: VnetHdr,
        in_port: InPort,
        depth: u8,
    ) {
        let MissDecision { install, execute, generated, invalidate, recirc } = d;
        let start = sys::monotonic_ns();
        if !invalidate.is_empty() {
            self.invalidate_tags(&invalidate);
        }
        // The flow first, then the packet: the packet's answer (a SYN-ACK,
        // then the ACK) must find the flow in the kernel, not miss again.
        // A split flow's second half before its first, which leads to it.
        for (k2, f2) in recirc {
            let _ = self.install(&k2, f2);
        }
        if let Some(f) = install {
            // A full table only costs later upcalls.
            let _ = self.install(key, f);
        }
        let installed = sys::monotonic_ns();
        if execute.iter().any(Action::is_emit) {
            self.execute(frame, vnet, &execute, in_port, depth);
        } else {
            self.drop_pkt(match in_port {
                InPort::Tunnel(_) => DropReason::UnknownTunnelKey,
                InPort::Port(_) => DropReason::UpcallDrop,
            });
        }
        for g in generated {
            self.execute(&g.frame, VnetHdr::default(), &g.actions, in_port, depth);
        }
        if depth == 0 {
            let t = &mut self.c.timing;
            t.misses += 1;
            t.install_ns += installed.saturating_sub(start);
            t.execute_ns += sys::monotonic_ns().saturating_sub(installed);
        }
    }

    /// One packet the kernel sent up.
    fn upcall(&mut self, rec: &[u8]) {
        let Some(h) = abi::UpcallHdr::parse(rec) else { return };
        let frame = abi::upcall_frame(&h, &rec[abi::UPCALL_HDR_LEN..]);
        let in_port = h.in_port();
        let key = match FlowKey::extract(&frame, in_port) {
            Ok(k) => k,
            Err(e) => {
                self.drop_pkt(DropReason::Malformed);
                if let Some(i) = ParseError::ALL.iter().position(|x| *x == e) {
                    self.c.parse[i] += 1;
                }
                return;
            }
        };
        let vnet = infer_vnet(&frame, h.gso_size);
        // The first half of a flow split at a reverse NAT sends up what it
        // could not translate in the kernel (no binding, no second half):
        // the handler's, not this table's.
        let split =
            |e: &super::flows::Entry| matches!(e.actions.as_slice(), [Action::RevNatRecirc(_)]);
        let hit = self.flows.lookup(&key).filter(|&id| !self.flows.get(id).is_some_and(split));
        if let Some(id) = hit {
            // A flow the kernel does not run, or one installed after this
            // packet went up.
            self.c.hits += 1;
            let actions = match self.flows.get_mut(id) {
                Some(e) => {
                    e.packets += 1;
                    e.bytes += frame.len() as u64;
                    e.tcp_flags |= key.tcp_flags;
                    e.used_ns = sys::monotonic_ns();
                    e.actions.clone()
                }
                None => Actions::new(),
            };
            if actions.iter().any(Action::is_emit) {
                self.execute(&frame, vnet, &actions, in_port, 0);
            } else {
                self.drop_pkt(DropReason::FlowDrop);
            }
            return;
        }
        self.c.upcalls += 1;
        let read = sys::monotonic_ns();
        self.c.timing.ring_wait_ns += read.saturating_sub(h.ktime_ns);
        if let Some(w) = self.workers.as_mut() {
            let m = Miss::new(key, frame, in_port, None, 0, vnet);
            if !w.submit(m) {
                self.drop_pkt(DropReason::MissBacklog);
            }
            return;
        }
        let Some(hd) = self.handler.as_mut() else {
            self.drop_pkt(match in_port {
                InPort::Tunnel(_) => DropReason::UnknownTunnelKey,
                InPort::Port(_) => DropReason::NoHandler,
            });
            return;
        };
        let d = hd.on_miss(&key, &frame, in_port);
        self.c.timing.handle_ns += sys::monotonic_ns().saturating_sub(read);
        self.apply_decision(d, &key, &frame, vnet, in_port, 0);
    }

    /// Serves the upcall rings: the main ring in batches, and between
    /// them one miss at a time from the spare ring (misses let through past
    /// their port's budget, [`crate::limit`]), so a borrowed miss holds up
    /// a miss within its budget by one simulation at most.
    pub(super) fn drain_ring(&mut self) -> usize {
        let mut n = 0;
        loop {
            let mut batch: Vec<Vec<u8>> = Vec::new();
            while batch.len() < 64 {
                match self.bpf.maps.upcalls.next() {
                    Some(item) => batch.push(item.to_vec()),
                    None => break,
                }
            }
            // Taken off the ring before it is simulated: the program sees
            // the room free while this one is handled.
            let spare = self.bpf.maps.upcalls_spare.next().map(|item| item.to_vec());
            if batch.is_empty() && spare.is_none() {
                return n;
            }
            if !batch.is_empty() {
                self.c.ring_batches += 1;
            }
            n += batch.len() + usize::from(spare.is_some());
            for rec in batch.iter().chain(spare.iter()) {
                self.upcall(rec);
            }
        }
    }

    /// Applies the answers the miss workers have given, in order.
    pub(super) fn finish_misses(&mut self) {
        let Some(w) = self.workers.as_mut() else { return };
        let mut done = std::mem::take(&mut self.answers);
        w.complete(|m, d| done.push((m, d)));
        for (m, d) in done.drain(..) {
            self.apply_decision(d, &m.key, &m.frame, m.meta, m.in_port, m.depth);
        }
        self.answers = done;
    }

    /// Hands misses to one worker thread per handler from now on (none:
    /// the inline handler again). Misses in flight with the old workers
    /// are answered first.
    pub(super) fn set_workers(
        &mut self,
        handlers: Vec<Box<dyn UpcallHandler>>,
    ) -> Result<(), DpError> {
        Workers::settle(self, |s| s.workers.as_ref(), Self::finish_misses);
        self.workers = None;
        if !handlers.is_empty() {
            let wake = self.wake.clone().ok_or(DpError::Gone)?;
            let w = Workers::start(&format!("{}-miss", self.cfg.name), handlers, wake)
                .map_err(|e| io_err("starting the miss workers", e))?;
            self.workers = Some(w);
        }
        // Lending past the budgets only while misses are simulated inline.
        super::lifecycle::write_limits(&mut self.bpf.maps, &self.cfg.limits, self.workers.is_some())
    }

    /// Wait (briefly) until the kernel has run every packet injected so
    /// far, so a packet-out is counted when `execute` returns.
    pub(super) fn sync_injects(&self) {
        let deadline = Instant::now() + Duration::from_millis(100);
        loop {
            let done = kernel_sum(&self.bpf, abi::counter::INJECT)
                + kernel_sum(&self.bpf, abi::counter::DROP_STALE_EXEC)
                - self.inject_base;
            if done >= self.c.injected || Instant::now() >= deadline {
                return;
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::testing::udp_frame;
    use midonet_flow::MacAddr;

    #[test]
    fn reinjected_frames_keep_their_offload_state() {
        let f = udp_frame(
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1,
            2,
            b"data",
        );
        // udp_frame leaves the checksum 0 (none): nothing to do.
        assert_eq!(infer_vnet(&f, 0), VnetHdr::default());
        // A checksum that does not verify was partial.
        let mut p = f.clone();
        p[40..42].copy_from_slice(&[0x12, 0x34]);
        let v = infer_vnet(&p, 0);
        assert_eq!((v.flags, v.csum_start, v.csum_offset), (VnetHdr::F_NEEDS_CSUM, 34, 6));
        // A GSO frame is re-segmented on the way out.
        let g = infer_vnet(&p, 1400);
        assert_eq!((g.gso_type, g.gso_size, g.hdr_len), (VnetHdr::GSO_UDP_L4, 1400, 42));
    }
}
