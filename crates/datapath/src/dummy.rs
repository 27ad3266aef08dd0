//! The in-memory provider: vports are names, frames are injected by the
//! test and outputs are captured, tunnel datagrams are captured whole (VXLAN
//! header included) so a test can carry them to another dummy datapath (a
//! fake tunnel peer) with [`DummyDatapath::inject_tunnel`].
//!
//! It runs the very same [`Core`] pipeline as the userspace provider,
//! synchronously on the caller's thread under a mutex, so the agent's tests
//! exercise the real flow table, executor and counters.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use parking_lot::Mutex;

use crate::pipeline::{Core, Counters, Io};
use crate::sys::{Slot, VnetHdr};
use crate::{
    Actions, Datapath, DpError, DpStats, FlowId, FlowInfo, FlowInstall, FlowKey, PortNo,
    TableConfig, UpcallHandler,
};

/// A frame captured on a vport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub frame: Vec<u8>,
    pub vnet: VnetHdr,
}

/// A datagram captured on the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPacket {
    pub dst: Ipv4Addr,
    /// VXLAN header + inner frame, as it would be on the wire.
    pub datagram: Vec<u8>,
}

impl TunnelPacket {
    /// VNI of the datagram.
    pub fn vni(&self) -> Option<u32> {
        crate::vxlan::decode(&self.datagram).ok().map(|(v, _)| v)
    }

    /// The inner frame.
    pub fn inner(&self) -> &[u8] {
        self.datagram.get(crate::vxlan::VXLAN_HDR_LEN..).unwrap_or(&[])
    }
}

#[derive(Default)]
pub struct DummyIo {
    outputs: BTreeMap<PortNo, Vec<Captured>>,
    tunnel: Vec<TunnelPacket>,
}

impl Io for DummyIo {
    fn output(&mut self, port: PortNo, slot: &Slot, counters: &mut Counters) -> bool {
        match self.outputs.get_mut(&port) {
            Some(q) => {
                q.push(Captured { frame: slot.frame().to_vec(), vnet: slot.vnet });
                let c = counters.port(port);
                c.tx_packets += 1;
                c.tx_bytes += slot.len as u64;
                true
            }
            None => false,
        }
    }

    fn tunnel(&mut self, dst: Ipv4Addr, hdr: [u8; 8], slot: &Slot, counters: &mut Counters) {
        let mut datagram = hdr.to_vec();
        datagram.extend_from_slice(slot.frame());
        counters.tunnel.tx_packets += 1;
        counters.tunnel.tx_bytes += datagram.len() as u64;
        self.tunnel.push(TunnelPacket { dst, datagram });
    }

    fn flush(&mut self, _counters: &mut Counters) {}
}

/// See the module docs.
pub struct DummyDatapath {
    core: Mutex<Core<DummyIo>>,
}

impl DummyDatapath {
    pub fn new(handler: Option<Box<dyn UpcallHandler>>) -> Self {
        Self::with_table(handler, TableConfig::default())
    }

    pub fn with_table(handler: Option<Box<dyn UpcallHandler>>, table: TableConfig) -> Self {
        DummyDatapath { core: Mutex::new(Core::new(DummyIo::default(), handler, table)) }
    }

    /// Replace the upcall handler.
    pub fn set_handler(&self, handler: Option<Box<dyn UpcallHandler>>) {
        self.core.lock().handler = handler;
    }

    /// Sets the upcall budgets (the dummy starts unlimited, so tests that
    /// count misses see every one).
    pub fn set_upcall_limits(&self, limits: crate::UpcallLimits) {
        self.core.lock().limiter.set_limits(limits);
    }

    /// Which peers get offload state across the tunnel ([`crate::pipeline::Core::tunnel_offload`]).
    pub fn set_tunnel_offload(&self, to: crate::TunnelOffload) {
        self.core.lock().tunnel_offload = to;
    }

    /// Which peers get offload state across the tunnel now.
    pub fn tunnel_offload(&self) -> crate::TunnelOffload {
        self.core.lock().tunnel_offload.clone()
    }

    /// A frame arrives on `port` (as if from the VM).
    pub fn inject(&self, port: PortNo, frame: &[u8]) {
        self.inject_vnet(port, frame, VnetHdr::default());
    }

    /// Like [`Self::inject`] with offload metadata.
    pub fn inject_vnet(&self, port: PortNo, frame: &[u8], vnet: VnetHdr) {
        let mut c = self.core.lock();
        c.tick();
        let mut s = Slot::from_frame(frame);
        s.vnet = vnet;
        if c.has_port(port) {
            c.process_port(port, &mut s);
        } else {
            c.counters.drop(crate::DropReason::UnknownPort);
        }
        c.flush();
    }

    /// A VXLAN datagram (header + inner frame) arrives from the underlay,
    /// from an unnamed sender (0.0.0.0: accepted only while no peer set was
    /// pushed, see [`Datapath::set_tunnel_peers`]).
    pub fn inject_tunnel(&self, datagram: &[u8]) {
        self.inject_tunnel_from(Ipv4Addr::UNSPECIFIED, datagram);
    }

    /// A VXLAN datagram arrives from the underlay address `src`.
    pub fn inject_tunnel_from(&self, src: Ipv4Addr, datagram: &[u8]) {
        let mut c = self.core.lock();
        c.tick();
        if !c.tunnel_source_allowed(src, 1, datagram.len() as u64) {
            return;
        }
        let mut s = Slot::from_frame(datagram);
        s.src = src;
        c.process_tunnel(&mut s);
        c.flush();
    }

    /// Take what was output on `port` so far.
    pub fn take_output(&self, port: PortNo) -> Vec<Captured> {
        self.core.lock().io.outputs.get_mut(&port).map(std::mem::take).unwrap_or_default()
    }

    /// Take the tunnel datagrams sent so far.
    pub fn take_tunnel(&self) -> Vec<TunnelPacket> {
        std::mem::take(&mut self.core.lock().io.tunnel)
    }

    /// Run idle expiry now; returns how many flows went.
    pub fn expire(&self) -> usize {
        self.core.lock().expire()
    }
}

impl Datapath for DummyDatapath {
    fn add_vport(&self, ifname: &str) -> Result<PortNo, DpError> {
        let mut c = self.core.lock();
        let p = c.alloc_port(ifname)?;
        c.io.outputs.insert(p, Vec::new());
        Ok(p)
    }

    fn remove_vport(&self, port: PortNo) -> Result<(), DpError> {
        let mut c = self.core.lock();
        c.free_port(port)?;
        c.io.outputs.remove(&port);
        Ok(())
    }

    fn bind_tunnel_key(&self, key: u32, port: PortNo) -> Result<(), DpError> {
        self.core.lock().bind_tunnel_key(key, port)
    }

    fn unbind_tunnel_key(&self, key: u32) -> Result<(), DpError> {
        self.core.lock().tunnel_ports.remove(&(key & 0x00ff_ffff));
        Ok(())
    }

    fn set_tunnel_peers(&self, peers: &[Ipv4Addr]) -> Result<(), DpError> {
        self.core.lock().tunnel_peers = Some(peers.iter().copied().collect());
        Ok(())
    }

    fn set_offload_peers(&self, peers: &[Ipv4Addr]) -> Result<(), DpError> {
        self.core.lock().tunnel_offload =
            crate::TunnelOffload::Peers(peers.iter().copied().collect());
        Ok(())
    }

    fn install_flow(&self, key: FlowKey, flow: FlowInstall) -> Result<FlowId, DpError> {
        let mut c = self.core.lock();
        c.tick();
        c.install(&key, flow)
    }

    fn invalidate_tags(&self, tags: Vec<u64>) -> Result<usize, DpError> {
        Ok(self.core.lock().table.invalidate_tags(&tags))
    }

    fn flush_flows(&self) -> Result<usize, DpError> {
        Ok(self.core.lock().table.flush())
    }

    fn execute(&self, frame: Vec<u8>, actions: Actions) -> Result<(), DpError> {
        let mut c = self.core.lock();
        c.execute_generated(&frame, &actions);
        c.flush();
        Ok(())
    }

    fn stats(&self) -> Result<DpStats, DpError> {
        Ok(self.core.lock().stats())
    }

    fn dump_flows(&self) -> Result<Vec<FlowInfo>, DpError> {
        let mut c = self.core.lock();
        c.tick();
        Ok(c.dump_flows())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering;

    use midonet_flow::{Action, MacAddr};

    use super::*;
    use crate::testing::{mac_tag, udp_frame, MacTableHandler, TCP4_GSO};
    use crate::DropReason;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
    const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc]);

    fn frame(dst: MacAddr, sport: u16) -> Vec<u8> {
        udp_frame(
            A,
            dst,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            sport,
            7,
            b"payload",
        )
    }

    fn two_port_dp() -> (DummyDatapath, PortNo, PortNo, std::sync::Arc<std::sync::atomic::AtomicU64>)
    {
        let dp = DummyDatapath::new(None);
        let p1 = dp.add_vport("vm1").expect("p1");
        let p2 = dp.add_vport("vm2").expect("p2");
        let h =
            MacTableHandler::new().route(B, &[Action::Output(p2)]).route(A, &[Action::Output(p1)]);
        let calls = h.calls.clone();
        dp.set_handler(Some(Box::new(h)));
        (dp, p1, p2, calls)
    }

    #[test]
    fn first_packet_upcalls_then_megaflow_forwards() {
        let (dp, p1, p2, calls) = two_port_dp();
        for sport in 0..10 {
            dp.inject(p1, &frame(B, sport));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1, "one upcall; the megaflow wildcards ports");
        let out = dp.take_output(p2);
        assert_eq!(out.len(), 10);
        assert_eq!(out[3].frame, frame(B, 3));
        let st = dp.stats().expect("stats");
        assert_eq!(st.port(p1).map(|c| c.rx_packets), Some(10));
        assert_eq!(
            st.port(p2).map(|c| (c.tx_packets, c.tx_bytes)),
            Some((10, 10 * out[0].frame.len() as u64))
        );
        assert_eq!(st.table.flows, 1);
        assert_eq!(st.upcalls, 1);
        let flows = dp.dump_flows().expect("dump");
        // The packet that missed was executed by the upcall, not by the flow.
        assert_eq!(flows[0].packets, 9);
        assert_eq!(flows[0].tags, vec![mac_tag(B)]);
    }

    #[test]
    fn misses_over_a_ports_budget_never_reach_the_handler() {
        let (dp, p1, p2, calls) = two_port_dp();
        // 10 upcalls/s, burst 5: nothing accrues while the test runs.
        dp.set_upcall_limits(crate::UpcallLimits {
            port_rate: 10,
            port_burst: 5,
            ..crate::UpcallLimits::UNLIMITED
        });
        for sport in 0..20 {
            dp.inject(p1, &frame(C, sport)); // unknown: a miss every time
        }
        assert_eq!(calls.load(Ordering::Relaxed), 5);
        let st = dp.stats().expect("stats");
        assert_eq!(st.drops.get(DropReason::UpcallRateLimited), 15);
        let c = st.port(p1).copied().unwrap_or_default();
        assert_eq!((c.upcalls, c.upcall_limited), (5, 15));
        // Port 2 has its own budget: its first misses go up.
        dp.inject(p2, &frame(C, 1));
        assert_eq!(calls.load(Ordering::Relaxed), 6, "a flood on one port costs another nothing");
        // A flow hit needs no budget.
        dp.set_upcall_limits(crate::UpcallLimits::UNLIMITED);
        dp.inject(p1, &frame(B, 1));
        dp.set_upcall_limits(crate::UpcallLimits {
            port_rate: 10,
            port_burst: 1,
            ..crate::UpcallLimits::UNLIMITED
        });
        for sport in 0..50 {
            dp.inject(p1, &frame(B, sport));
        }
        assert_eq!(dp.take_output(p2).len(), 51, "hits are never limited");
    }

    #[test]
    fn past_its_budget_a_port_borrows_while_the_miss_path_has_room() {
        let (dp, p1, _p2, calls) = two_port_dp();
        dp.set_upcall_limits(crate::UpcallLimits {
            port_rate: 10,
            port_burst: 5,
            spare_depth: 4,
            ..crate::UpcallLimits::UNLIMITED
        });
        // The dummy handles each miss before the next frame: it has room.
        dp.core.lock().limiter.set_room(true);
        for sport in 0..20 {
            dp.inject(p1, &frame(C, sport));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 20, "every miss goes up: nothing waits");
        let c = dp.stats().expect("stats").port(p1).copied().unwrap_or_default();
        assert_eq!((c.upcalls, c.upcall_limited, c.upcall_borrowed), (20, 0, 15));
        // A miss path that is behind lends nothing: the budget holds.
        dp.core.lock().limiter.set_room(false);
        for sport in 20..30 {
            dp.inject(p1, &frame(C, sport));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 20);
        let c = dp.stats().expect("stats").port(p1).copied().unwrap_or_default();
        assert_eq!((c.upcalls, c.upcall_limited, c.upcall_borrowed), (20, 10, 15));
    }

    #[test]
    fn malformed_frame_is_counted_while_good_traffic_continues() {
        let (dp, p1, p2, _) = two_port_dp();
        dp.inject(p1, &frame(B, 1));
        let mut bad = frame(B, 2);
        bad.truncate(14 + 10); // IPv4 header cut short
        dp.inject(p1, &bad);
        dp.inject(p1, &[0u8; 5]);
        dp.inject(p1, &frame(B, 3));
        let st = dp.stats().expect("stats");
        assert_eq!(st.drops.get(DropReason::Malformed), 2);
        let eth = st.parse_errors.iter().find(|(e, _)| e.as_str() == "eth_truncated").map(|x| x.1);
        assert_eq!(eth, Some(1));
        assert_eq!(dp.take_output(p2).len(), 2);
    }

    #[test]
    fn unknown_destination_is_an_upcall_drop_and_no_handler_is_counted() {
        let (dp, p1, _, _) = two_port_dp();
        dp.inject(p1, &frame(C, 1));
        dp.set_handler(None);
        dp.inject(p1, &frame(C, 1));
        dp.inject(99, &frame(B, 1));
        let d = dp.stats().expect("stats").drops;
        assert_eq!(d.get(DropReason::UpcallDrop), 1);
        assert_eq!(d.get(DropReason::NoHandler), 1);
        assert_eq!(d.get(DropReason::UnknownPort), 1);
    }

    #[test]
    fn invalidate_tags_forces_a_new_upcall() {
        let (dp, p1, _, calls) = two_port_dp();
        dp.inject(p1, &frame(B, 1));
        dp.inject(p1, &frame(B, 1));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(dp.invalidate_tags(vec![mac_tag(C)]).expect("inv"), 0);
        assert_eq!(dp.invalidate_tags(vec![mac_tag(B)]).expect("inv"), 1);
        dp.inject(p1, &frame(B, 1));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn tunnel_to_peer_outputs_by_key_without_simulation() {
        // Host 1: VM A on port 1; B lives on host 2 behind tunnel key 0x42.
        let h2_ip = Ipv4Addr::new(198, 18, 0, 2);
        let dp1 = DummyDatapath::new(None);
        let a1 = dp1.add_vport("a").expect("a");
        dp1.set_handler(Some(Box::new(
            MacTableHandler::new().route(B, &[Action::Tunnel { dst: h2_ip, key: 0x42 }]),
        )));
        let dp2 = DummyDatapath::new(None);
        let b2 = dp2.add_vport("b").expect("b");
        dp2.bind_tunnel_key(0x42, b2).expect("bind");
        let h2 = MacTableHandler::new();
        let calls2 = h2.calls.clone();
        dp2.set_handler(Some(Box::new(h2)));

        dp1.inject_vnet(
            a1,
            &frame(B, 1),
            VnetHdr {
                flags: 1,
                gso_type: VnetHdr::GSO_NONE,
                hdr_len: 0,
                gso_size: 0,
                csum_start: 34,
                csum_offset: 6,
            },
        );
        let sent = dp1.take_tunnel();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].dst, sent[0].vni()), (h2_ip, Some(0x42)));
        assert_eq!(sent[0].inner(), &frame(B, 1)[..]);
        dp2.inject_tunnel(&sent[0].datagram);
        let got = dp2.take_output(b2);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].frame, frame(B, 1));
        assert_eq!(got[0].vnet.csum_start, 34, "offload metadata crossed the tunnel");
        assert_eq!(calls2.load(Ordering::Relaxed), 0, "no simulation on the egress host");
        // An unbound key goes to the handler, which drops it: counted.
        let mut other = sent[0].datagram.clone();
        other[6] = 0x43;
        dp2.inject_tunnel(&other);
        dp2.inject_tunnel(&[0u8; 4]);
        let d = dp2.stats().expect("stats").drops;
        assert_eq!(d.get(DropReason::UnknownTunnelKey), 1);
        assert_eq!(d.get(DropReason::TunnelMalformed), 1);
    }

    /// With offload metadata to no peer, a TCP GSO frame crosses the tunnel as
    /// plain, checksummed segments behind plain VXLAN headers, while a
    /// local output of the same packet keeps its offload state; and a peer
    /// of ours delivers the segments as they came.
    #[test]
    fn without_tunnel_offload_a_gso_frame_crosses_as_plain_segments() {
        let h2_ip = Ipv4Addr::new(198, 18, 0, 2);
        let dp1 = DummyDatapath::new(None);
        let a1 = dp1.add_vport("a").expect("a");
        let c1 = dp1.add_vport("c").expect("c");
        dp1.set_tunnel_offload(crate::TunnelOffload::Never);
        dp1.set_handler(Some(Box::new(
            MacTableHandler::new()
                .route(B, &[Action::Tunnel { dst: h2_ip, key: 0x42 }, Action::Output(c1)]),
        )));
        let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(A.0, B.0)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1000, 2000, 1, 100)
            .ack(1)
            .write(&mut f, &data)
            .expect("build");
        let vnet = TCP4_GSO;
        dp1.inject_vnet(a1, &f, vnet);
        let sent = dp1.take_tunnel();
        assert_eq!(sent.len(), 3, "4000 bytes in 1448-byte segments");
        let mut got = Vec::new();
        for p in &sent {
            assert_eq!(&p.datagram[..2], &[0x08, 0], "a plain RFC 7348 header");
            assert_eq!(p.vni(), Some(0x42));
            let seg = etherparse::SlicedPacket::from_ethernet(p.inner()).expect("parses");
            let Some(etherparse::TransportSlice::Tcp(t)) = seg.transport else { panic!("tcp") };
            got.extend_from_slice(t.payload());
        }
        assert_eq!(got, data);
        let local = dp1.take_output(c1);
        assert_eq!(local.len(), 1);
        assert_eq!((local[0].frame.clone(), local[0].vnet), (f, vnet), "local output untouched");
        assert_eq!(dp1.stats().expect("stats").tunnel_offload_resolved, 1);

        let dp2 = DummyDatapath::new(None);
        let b2 = dp2.add_vport("b").expect("b");
        dp2.bind_tunnel_key(0x42, b2).expect("bind");
        for p in &sent {
            dp2.inject_tunnel(&p.datagram);
        }
        let delivered = dp2.take_output(b2);
        assert_eq!(delivered.len(), 3);
        assert!(delivered.iter().all(|c| !c.vnet.is_offloaded()), "plain frames, plain vnet");
    }

    /// With offload peers named, a GSO frame keeps its offload state to a
    /// named peer (one datagram, reserved bits set) and crosses as plain
    /// segments to any other destination (a kernel VTEP); replacing the set
    /// moves a peer from one kind to the other.
    #[test]
    fn offload_peers_get_the_metadata_and_every_other_peer_plain_segments() {
        let (ours, kernel) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3));
        let dp = DummyDatapath::new(None);
        let a = dp.add_vport("a").expect("a");
        dp.set_handler(Some(Box::new(MacTableHandler::new().route(
            B,
            &[Action::Tunnel { dst: ours, key: 7 }, Action::Tunnel { dst: kernel, key: 7 }],
        ))));
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(A.0, B.0)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1000, 2000, 1, 100)
            .write(&mut f, &[7u8; 3000])
            .expect("build");
        let vnet = TCP4_GSO;
        let plain = |p: &TunnelPacket| p.datagram[..2] == [0x08, 0];
        let per_peer = |sent: &[TunnelPacket], dst| {
            let to: Vec<&TunnelPacket> = sent.iter().filter(|p| p.dst == dst).collect();
            (to.len(), to.iter().all(|p| plain(p)))
        };

        dp.set_offload_peers(&[ours]).expect("offload peers");
        dp.inject_vnet(a, &f, vnet);
        let sent = dp.take_tunnel();
        assert_eq!(per_peer(&sent, ours), (1, false), "one offloaded datagram to our kind");
        assert_eq!(per_peer(&sent, kernel), (3, true), "3000 bytes as plain segments");
        assert_eq!(dp.stats().expect("stats").tunnel_offload_resolved, 1);

        dp.set_offload_peers(&[]).expect("no offload peer");
        dp.inject_vnet(a, &f, vnet);
        let sent = dp.take_tunnel();
        assert_eq!(per_peer(&sent, ours), (3, true), "no longer named: plain");
        assert_eq!(per_peer(&sent, kernel), (3, true));
    }

    /// Issue 12: a spoofed datagram with a guessed VNI from an underlay
    /// address that is no tunnel peer never reaches the VM, once the agent
    /// has named the peers; a peer's still does, and before any set was
    /// pushed every source is accepted (start-up).
    #[test]
    fn issue_12_tunnel_datagrams_from_non_peers_are_dropped_once_peers_are_set() {
        let (peer, stranger) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 66));
        let dp = DummyDatapath::new(Some(Box::new(MacTableHandler::new())));
        let b = dp.add_vport("b").expect("b");
        dp.bind_tunnel_key(0x42, b).expect("bind");
        let hdr = crate::vxlan::encode(0x42, &VnetHdr::default()).expect("plain header");
        let datagram = [&hdr[..], &frame(B, 1)].concat();

        dp.inject_tunnel_from(stranger, &datagram);
        assert_eq!(dp.take_output(b).len(), 1, "no peer set yet: accepted");

        dp.set_tunnel_peers(&[peer]).expect("peers");
        for _ in 0..3 {
            dp.inject_tunnel_from(stranger, &datagram);
        }
        dp.inject_tunnel(&datagram);
        assert!(dp.take_output(b).is_empty(), "non-peers reach nothing");
        let st = dp.stats().expect("stats");
        assert_eq!(st.drops.get(DropReason::TunnelUnknownSource), 4);
        assert_eq!(st.tunnel.rx_packets, 5, "dropped datagrams were received");

        dp.inject_tunnel_from(peer, &datagram);
        assert_eq!(dp.take_output(b).len(), 1, "a peer's datagram is delivered");

        dp.set_tunnel_peers(&[]).expect("no peers");
        dp.inject_tunnel_from(peer, &datagram);
        assert!(dp.take_output(b).is_empty(), "an empty set accepts nothing");
        assert_eq!(dp.stats().expect("stats").drops.get(DropReason::TunnelUnknownSource), 5);
    }

    #[test]
    fn rewrites_apply_in_order_per_output() {
        let dp = DummyDatapath::new(None);
        let p1 = dp.add_vport("p1").expect("p1");
        let p2 = dp.add_vport("p2").expect("p2");
        let p3 = dp.add_vport("p3").expect("p3");
        dp.execute(
            frame(B, 1),
            [
                Action::PushVlan { vid: 5, pcp: 1 },
                Action::Output(p2),
                Action::PopVlan,
                Action::SetEthDst(C),
                Action::SetTtl(9),
                Action::Output(p3),
            ]
            .into_iter()
            .collect(),
        )
        .expect("execute");
        let tagged = &dp.take_output(p2)[0].frame;
        assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x20, 0x05]);
        assert_eq!(&tagged[16..], &frame(B, 1)[12..]);
        let k = FlowKey::extract(&dp.take_output(p3)[0].frame, midonet_flow::InPort::Port(p1))
            .expect("parse");
        assert_eq!((k.eth_dst, k.vlan_vid, k.ip_ttl), (C, None, 9));
    }

    #[test]
    fn idle_flows_expire() {
        let (dp, p1, _, _) = two_port_dp();
        dp.set_handler(Some(Box::new(
            MacTableHandler { idle_timeout_ms: 1, ..MacTableHandler::new() }
                .route(B, &[Action::Output(p1)]),
        )));
        dp.inject(p1, &frame(B, 1));
        assert_eq!(dp.stats().expect("stats").table.flows, 1);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(dp.expire(), 1);
        assert_eq!(dp.stats().expect("stats").table.flows, 0);
    }
}
