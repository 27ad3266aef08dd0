//! The userspace provider: AF_PACKET vports and a VXLAN UDP socket served by
//! one dedicated OS thread.
//!
//! ```text
//!  control thread(s)                        datapath thread (optionally in a netns)
//!  UserspaceDatapath::call(f) ─channel─┐    loop {
//!                              eventfd ┴──>   epoll_wait(ports, tunnel, eventfd, 100 ms)
//!                                             eventfd: run queued control closures
//!                                             port p:  recvmmsg ≤ batch → pipeline → sendmmsg queues → flush
//!                                             tunnel:  recvmmsg ≤ batch → source a peer? → VXLAN decode → pipeline → flush
//!                                             every 1 s: idle expiry, kernel drop counters
//!                                           }
//! ```
//!
//! Control operations are closures run on the datapath thread between
//! batches, so the pipeline state needs no lock and the hot path never
//! synchronises. The upcall handler runs inline on this thread.
//!
//! All receive and transmit buffers are allocated when a port is added
//! (`batch` slots of 64 KB + headroom per port and for the tunnel) and reused.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::pipeline::{Core, Counters, Io};
use crate::sys::{
    self, PacketSocket, Poller, RxBatch, Slot, TunnelItem, TunnelSocket, TunnelTxQueue, TxItem,
    TxQueue, Waker, VNET_HDR_LEN,
};
use crate::workers::Workers;
use crate::{
    Actions, Datapath, DpError, DpStats, DropReason, FlowId, FlowInfo, FlowInstall, FlowKey,
    PortNo, TableConfig, UpcallHandler,
};

/// Configuration of a [`UserspaceDatapath`].
#[derive(Debug, Clone)]
pub struct UserspaceConfig {
    /// Thread name (also used in errors).
    pub name: String,
    /// Run the datapath thread inside `/run/netns/<netns>`.
    pub netns: Option<String>,
    /// Underlay address for VXLAN; `None` = no tunnel socket.
    pub underlay_ip: Option<Ipv4Addr>,
    /// VXLAN UDP port (sent to and listened on).
    pub vxlan_port: u16,
    /// Packets per receive/transmit batch.
    pub batch: usize,
    pub table: TableConfig,
    /// After the last packet, keep polling (yielding the CPU between polls)
    /// this long before sleeping in `epoll_wait`. A reply usually comes back
    /// within a few hundred µs; catching it without a wake-up saves the
    /// scheduler latency on every hop, and under a flood of small packets
    /// it saves a sleep and a wake-up per batch. 0 = always sleep. Default
    /// 30: on the shared 2-core box (interleaved A/B, 6 pairs) iperf3's
    /// 18-byte UDP rose from 108 to 145 kpps delivered and ping RTT fell
    /// from 0.20 to 0.15 ms, with TCP unchanged (12.5 Gbit/s). (It was 0
    /// after an earlier round where spinning cost TCP; keep it short.)
    pub spin_us: u64,
    /// Run the datapath thread under `SCHED_FIFO` with this priority (1-99),
    /// like the kernel's softirq work that it replaces: forwarding then
    /// preempts the guests' applications instead of queueing behind them.
    /// The kernel's RT throttling still leaves 5 % to others. `None` = the
    /// normal scheduler (the default: on the shared 2-core test box the
    /// effect was within noise; it removes the loss in UDP floods by
    /// slowing the sender, as the kernel path does, and sometimes starves it).
    pub rt_priority: Option<i32>,
    /// Write a UDP GRO message from the tunnel whose datagrams are one
    /// small-UDP flow to a bound port as one UDP GSO frame
    /// ([`crate::pipeline::Core::process_tunnel_gro`]). Default on.
    pub coalesce_udp: bool,
    /// Send a pure FIN that comes in one receive batch of a port right
    /// behind the last data segment of its connection inside that segment
    /// ([`crate::finmerge`]), so that the two cannot reach the other end
    /// in different batches. Default on.
    pub merge_fins: bool,
    /// Which peers get the offload state of TCP and checksum-offloaded
    /// frames across the tunnel in the VXLAN reserved bits, to keep them big
    /// (default: every peer). The others get them segmented and checksummed
    /// here, as plain RFC 7348, which a kernel VTEP (the `ebpf` provider's
    /// vxlan device) accepts ([`crate::offload`]).
    pub tunnel_offload: crate::TunnelOffload,
    /// Upcall budgets per port and for the tunnel ([`crate::limit`]).
    pub limits: crate::UpcallLimits,
}

impl Default for UserspaceConfig {
    fn default() -> Self {
        UserspaceConfig {
            name: "midonet-dp".into(),
            netns: None,
            underlay_ip: None,
            vxlan_port: crate::vxlan::VXLAN_PORT,
            batch: 32,
            table: TableConfig::default(),
            spin_us: 30,
            rt_priority: None,
            coalesce_udp: true,
            merge_fins: true,
            tunnel_offload: crate::TunnelOffload::Always,
            limits: crate::UpcallLimits::default(),
        }
    }
}

const TUNNEL_TOKEN: u64 = u64::MAX - 1;

struct PortIo {
    sock: PacketSocket,
    txq: TxQueue,
    dirty: bool,
}

struct TunnelIo {
    sock: TunnelSocket,
    txq: TunnelTxQueue,
}

/// The userspace provider's [`Io`]: per-port `sendmmsg` queues.
pub struct UsIo {
    ports: Vec<Option<PortIo>>,
    dirty: Vec<PortNo>,
    tunnel: Option<TunnelIo>,
    vxlan_port: u16,
}

impl UsIo {
    fn flush_port(p: &mut PortIo, port: PortNo, counters: &mut Counters) {
        let (sent, bytes, failed) = p.txq.flush(p.sock.fd());
        let c = counters.port(port);
        c.tx_packets += sent as u64;
        c.tx_bytes += bytes.saturating_sub((VNET_HDR_LEN * sent) as u64);
        counters.drops.add(DropReason::TxError, failed as u64);
    }

    fn flush_tunnel(t: &mut TunnelIo, counters: &mut Counters) {
        let (sent, bytes, failed) = t.txq.flush(t.sock.fd());
        counters.tunnel.tx_packets += sent as u64;
        counters.tunnel.tx_bytes += bytes;
        counters.drops.add(DropReason::TxError, failed as u64);
    }
}

impl Io for UsIo {
    #[inline]
    fn output(&mut self, port: PortNo, slot: &Slot, counters: &mut Counters) -> bool {
        let Some(Some(p)) = self.ports.get_mut(port as usize) else {
            return false;
        };
        if p.txq.is_full() {
            Self::flush_port(p, port, counters);
        }
        let mut head = [0u8; 16];
        head[..VNET_HDR_LEN].copy_from_slice(&slot.vnet.to_bytes());
        p.txq.push(TxItem {
            head,
            head_len: VNET_HDR_LEN as u8,
            ptr: slot.frame().as_ptr(),
            len: slot.len,
            dst: None,
        });
        if !p.dirty {
            p.dirty = true;
            self.dirty.push(port);
        }
        true
    }

    #[inline]
    fn tunnel(&mut self, dst: Ipv4Addr, hdr: [u8; 8], slot: &Slot, counters: &mut Counters) {
        let Some(t) = self.tunnel.as_mut() else {
            counters.drop(DropReason::TxError);
            return;
        };
        if t.txq.is_full() {
            Self::flush_tunnel(t, counters);
        }
        t.txq.push(TunnelItem {
            hdr,
            ptr: slot.frame().as_ptr(),
            len: slot.len,
            dst: SocketAddrV4::new(dst, self.vxlan_port),
        });
    }

    fn flush(&mut self, counters: &mut Counters) {
        for port in self.dirty.drain(..) {
            if let Some(Some(p)) = self.ports.get_mut(port as usize) {
                p.dirty = false;
                Self::flush_port(p, port, counters);
            }
        }
        if let Some(t) = self.tunnel.as_mut() {
            if !t.txq.is_empty() {
                Self::flush_tunnel(t, counters);
            }
        }
    }
}

/// Which socket a receive batch belongs to.
#[derive(Clone, Copy)]
enum RxSource {
    Port(PortNo),
    Tunnel,
}

/// The datapath thread's state; control closures get `&mut State`.
pub struct State {
    pub core: Core<UsIo>,
    poller: Poller,
    rx: Vec<Option<RxBatch>>,
    tunnel_rx: Option<RxBatch>,
    batch: usize,
    stop: bool,
    spin: Duration,
    /// Packets received since the loop last looked (any socket).
    activity: u64,
    coalesce: bool,
    /// The FIN merge of ports' batches ([`crate::finmerge`]); `None` = off.
    fins: Option<crate::finmerge::FinMerger>,
}

impl State {
    fn add_vport(&mut self, ifname: &str) -> Result<PortNo, DpError> {
        let sock = PacketSocket::open(ifname)
            .map_err(|e| DpError::Io { what: format!("vport {ifname}"), source: e })?;
        let p = self.core.alloc_port(ifname)?;
        if let Err(e) = self.poller.add(sock.fd(), u64::from(p)) {
            let _ = self.core.free_port(p);
            return Err(DpError::Io { what: format!("epoll add {ifname}"), source: e });
        }
        let i = p as usize;
        if self.core.io.ports.len() <= i {
            self.core.io.ports.resize_with(i + 1, || None);
            self.rx.resize_with(i + 1, || None);
        }
        self.core.io.ports[i] = Some(PortIo { sock, txq: TxQueue::new(self.batch), dirty: false });
        self.rx[i] = Some(RxBatch::new(self.batch));
        Ok(p)
    }

    fn remove_vport(&mut self, p: PortNo) -> Result<(), DpError> {
        self.core.flush();
        self.core.free_port(p)?;
        if let Some(pio) = self.core.io.ports.get_mut(p as usize).and_then(Option::take) {
            let _ = self.poller.remove(pio.sock.fd());
        }
        if let Some(r) = self.rx.get_mut(p as usize) {
            *r = None;
        }
        Ok(())
    }

    /// Receive and process up to a few batches from one socket. Up to a
    /// few per wake-up: fewer `epoll_wait` calls under load, while other
    /// sockets still get their turn.
    fn receive(&mut self, src: RxSource) {
        let batch = match src {
            RxSource::Port(p) => self.rx.get_mut(p as usize).and_then(Option::take),
            RxSource::Tunnel => self.tunnel_rx.take(),
        };
        let Some(mut b) = batch else { return };
        let ovfl_before = b.rxq_ovfl;
        for _ in 0..8 {
            let n = self.recv(src, &mut b);
            if n == 0 {
                break;
            }
            self.activity += n as u64;
            self.core.counters.rx_batches += 1;
            self.core.tick();
            let merging = matches!(src, RxSource::Port(_)) && n > 1;
            let merging = match self.fins.as_mut() {
                Some(m) if merging => {
                    self.core.counters.tcp_fins_merged += m.merge(&mut b.slots[..n]) as u64;
                    true
                }
                _ => false,
            };
            for (i, s) in b.slots[..n].iter_mut().enumerate() {
                match src {
                    RxSource::Port(p)
                        if merging && self.fins.as_ref().is_some_and(|m| m.absorbed(i)) =>
                    {
                        // Received, and gone out inside an earlier slot.
                        let c = self.core.counters.port(p);
                        c.rx_packets += 1;
                        c.rx_bytes += s.len as u64;
                    }
                    RxSource::Port(p) => self.port_frame(p, s),
                    RxSource::Tunnel => self.tunnel_datagram(s),
                }
            }
            // Flush before the slots are reused: queued outputs point into them.
            self.core.flush();
            if n < b.capacity() {
                break;
            }
        }
        // The tunnel socket reports its kernel drops (SO_RXQ_OVFL) with the
        // messages; vports' are read in `housekeeping`.
        let lost = b.rxq_ovfl.wrapping_sub(ovfl_before);
        self.core.counters.drops.add(DropReason::RxOverrun, u64::from(lost));
        match src {
            RxSource::Port(p) => {
                if let Some(r) = self.rx.get_mut(p as usize) {
                    *r = Some(b);
                }
            }
            RxSource::Tunnel => self.tunnel_rx = Some(b),
        }
    }

    /// One `recvmmsg` into `b`; 0 when nothing came (or the socket is gone).
    fn recv(&mut self, src: RxSource, b: &mut RxBatch) -> usize {
        let r = match src {
            RxSource::Port(p) => {
                match self.core.io.ports.get(p as usize).and_then(Option::as_ref) {
                    Some(pio) => pio.sock.recv_batch(b),
                    None => return 0,
                }
            }
            RxSource::Tunnel => match self.core.io.tunnel.as_ref() {
                Some(t) => t.sock.recv_batch(b, crate::vxlan::VXLAN_HDR_LEN),
                None => return 0,
            },
        };
        r.unwrap_or_else(|_| {
            self.core.counters.drop(DropReason::RxError);
            0
        })
    }

    /// A frame received on vport `p`.
    fn port_frame(&mut self, p: PortNo, s: &mut Slot) {
        if s.len < 14 {
            self.core.counters.drop(DropReason::Truncated);
            return;
        }
        self.core.process_port(p, s);
    }

    /// A message from the tunnel socket: one VXLAN datagram, or a UDP GRO
    /// run of them.
    fn tunnel_datagram(&mut self, s: &mut Slot) {
        if s.len == 0 {
            self.core.counters.drop(DropReason::Truncated);
            return;
        }
        // One check per message: a GRO message's datagrams share a source.
        let datagrams = if s.seg == 0 { 1 } else { s.len.div_ceil(s.seg) as u64 };
        if !self.core.tunnel_source_allowed(s.src, datagrams, s.len as u64) {
            return;
        }
        if s.seg == 0 || s.seg >= s.len {
            self.core.process_tunnel(s);
            return;
        }
        // Or one datagram holding a kernel VTEP's whole UDP GSO frame, `seg`
        // its inner segment size ([`crate::offload::inner_gso`]): one IP
        // packet spanning the message is no run of datagrams. Its header
        // decides, as for any datagram, whether that state is used.
        let whole = s
            .frame()
            .get(crate::vxlan::VXLAN_HDR_LEN..)
            .and_then(|f| crate::offload::inner_gso(f, Some(s.seg)));
        if whole.is_some() {
            s.seg = 0;
            self.core.process_tunnel_as(s, whole);
            return;
        }
        if self.coalesce && self.core.process_tunnel_gro(s) {
            return;
        }
        // A GRO message: several datagrams back to back, each `seg` bytes
        // (the last may be shorter). Process them one by one in place;
        // outputs keep pointing into this buffer.
        let (base, total, seg) = (s.start, s.len, s.seg);
        let mut off = 0;
        while off < total {
            s.start = base + off;
            s.floor = base + off;
            s.len = seg.min(total - off);
            self.core.process_tunnel(s);
            off += seg;
        }
    }

    fn housekeeping(&mut self) {
        self.core.expire();
        let mut overrun = 0u64;
        for pio in self.core.io.ports.iter().flatten() {
            overrun += u64::from(pio.sock.take_kernel_drops());
        }
        self.core.counters.drops.add(DropReason::RxOverrun, overrun);
    }

    fn run(&mut self, ctl: &Receiver<Ctl>) {
        let mut ready = Vec::with_capacity(64);
        let mut last_house = Instant::now();
        let mut last_packet = Instant::now() - self.spin;
        while !self.stop {
            let spinning = last_packet.elapsed() < self.spin;
            if self.poller.wait(if spinning { 0 } else { 100 }, &mut ready).is_err() {
                self.core.counters.drop(DropReason::RxError);
            }
            if ready.is_empty() && spinning {
                std::thread::yield_now();
                continue;
            }
            for &tok in &ready {
                match tok {
                    sys::WAKE_TOKEN => {
                        self.poller.clear_wake();
                        while let Ok(f) = ctl.try_recv() {
                            f(self);
                        }
                    }
                    TUNNEL_TOKEN => self.receive(RxSource::Tunnel),
                    p => self.receive(RxSource::Port(p as PortNo)),
                }
            }
            if self.core.finish_misses() > 0 {
                self.core.flush();
                self.activity += 1;
            }
            if self.activity > 0 {
                self.activity = 0;
                last_packet = Instant::now();
            }
            if last_house.elapsed() >= Duration::from_secs(1) {
                last_house = Instant::now();
                self.housekeeping();
            }
        }
        self.core.flush();
    }
}

type Ctl = Box<dyn FnOnce(&mut State) + Send>;

/// See the module docs. Dropping it stops and joins the thread.
pub struct UserspaceDatapath {
    ctl: Sender<Ctl>,
    waker: Waker,
    thread: Mutex<Option<std::thread::JoinHandle<std::io::Result<()>>>>,
    tunnel_local: Option<SocketAddrV4>,
}

impl UserspaceDatapath {
    /// Start the datapath thread (inside `cfg.netns` if set). Fails if the
    /// namespace cannot be entered or the tunnel socket cannot be bound.
    pub fn start(
        cfg: UserspaceConfig,
        handler: Option<Box<dyn UpcallHandler>>,
    ) -> Result<Self, DpError> {
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Ctl>();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<Waker, DpError>>(1);
        let name = cfg.name.clone();
        let tunnel_local = cfg.underlay_ip.map(|ip| SocketAddrV4::new(ip, cfg.vxlan_port));
        let thread = sys::spawn_in_netns(cfg.name.clone(), cfg.netns.clone(), move || {
            let mut st = match build_state(&cfg, handler) {
                Ok(st) => st,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            match st.poller.waker() {
                Ok(w) => {
                    let _ = ready_tx.send(Ok(w));
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(DpError::Io { what: "eventfd".into(), source: e }));
                    return Ok(());
                }
            }
            st.run(&ctl_rx);
            Ok(())
        })
        .map_err(|e| DpError::Io { what: format!("spawn {name}"), source: e })?;
        let waker = match ready_rx.recv() {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                // The thread ended before reporting: netns entry failed.
                return Err(match thread.join() {
                    Ok(Err(e)) => DpError::Io { what: format!("netns {:?}", name), source: e },
                    _ => DpError::Gone,
                });
            }
        };
        Ok(UserspaceDatapath { ctl: ctl_tx, waker, thread: Mutex::new(Some(thread)), tunnel_local })
    }

    /// Run `f` on the datapath thread and return its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> R + Send + 'static,
    ) -> Result<R, DpError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.ctl
            .send(Box::new(move |s: &mut State| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| DpError::Gone)?;
        self.waker.wake();
        rx.recv().map_err(|_| DpError::Gone)
    }

    /// Simulate misses on one worker thread per handler
    /// ([`crate::workers`]); an empty list goes back to the inline handler.
    /// Answers still due from the previous workers are applied first.
    pub fn set_miss_workers(&self, handlers: Vec<Box<dyn UpcallHandler>>) -> Result<(), DpError> {
        self.call(move |s| {
            Workers::settle(s, |s| s.core.workers.as_ref(), |s| s.core.finish_misses());
            s.core.flush();
            s.core.workers = None;
            if handlers.is_empty() {
                return Ok(());
            }
            let wake =
                s.poller.waker().map_err(|e| DpError::Io { what: "eventfd".into(), source: e })?;
            let w = Workers::start("midonet-miss", handlers, std::sync::Arc::new(wake))
                .map_err(|e| DpError::Io { what: "starting the miss workers".into(), source: e })?;
            s.core.workers = Some(w);
            Ok(())
        })?
    }

    /// Replace the upcall handler (takes effect before the next batch).
    pub fn set_handler(&self, handler: Option<Box<dyn UpcallHandler>>) -> Result<(), DpError> {
        self.call(move |s| s.core.handler = handler)
    }

    /// Address the tunnel socket is bound to.
    pub fn tunnel_addr(&self) -> Option<SocketAddrV4> {
        self.tunnel_local
    }

    /// Stop the thread and wait for it.
    pub fn shutdown(&self) {
        let _ = self.ctl.send(Box::new(|s: &mut State| s.stop = true));
        self.waker.wake();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for UserspaceDatapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn build_state(
    cfg: &UserspaceConfig,
    handler: Option<Box<dyn UpcallHandler>>,
) -> Result<State, DpError> {
    if let Some(prio) = cfg.rt_priority {
        sys::set_realtime(prio)
            .map_err(|e| DpError::Io { what: "sched_setscheduler".into(), source: e })?;
    }
    let poller = Poller::new().map_err(|e| DpError::Io { what: "epoll".into(), source: e })?;
    let batch = cfg.batch.clamp(1, 1024);
    let tunnel = match cfg.underlay_ip {
        Some(ip) => {
            let local = SocketAddrV4::new(ip, cfg.vxlan_port);
            let sock = TunnelSocket::bind(local)
                .map_err(|e| DpError::Io { what: format!("tunnel socket {local}"), source: e })?;
            poller
                .add(sock.fd(), TUNNEL_TOKEN)
                .map_err(|e| DpError::Io { what: "epoll add tunnel".into(), source: e })?;
            Some(TunnelIo { sock, txq: TunnelTxQueue::new(batch.max(sys::GSO_MAX_SEGS)) })
        }
        None => None,
    };
    let tunnel_rx = tunnel.as_ref().map(|_| RxBatch::new(batch));
    let io = UsIo { ports: Vec::new(), dirty: Vec::new(), tunnel, vxlan_port: cfg.vxlan_port };
    let mut core = Core::new(io, handler, cfg.table);
    core.limiter.set_limits(cfg.limits);
    core.tunnel_offload = cfg.tunnel_offload.clone();
    Ok(State {
        core,
        poller,
        rx: Vec::new(),
        tunnel_rx,
        batch,
        stop: false,
        spin: Duration::from_micros(cfg.spin_us),
        activity: 0,
        coalesce: cfg.coalesce_udp,
        fins: cfg.merge_fins.then(crate::finmerge::FinMerger::default),
    })
}

impl Datapath for UserspaceDatapath {
    fn add_vport(&self, ifname: &str) -> Result<PortNo, DpError> {
        let n = ifname.to_owned();
        self.call(move |s| s.add_vport(&n))?
    }

    fn remove_vport(&self, port: PortNo) -> Result<(), DpError> {
        self.call(move |s| s.remove_vport(port))?
    }

    fn bind_tunnel_key(&self, key: u32, port: PortNo) -> Result<(), DpError> {
        self.call(move |s| s.core.bind_tunnel_key(key, port))?
    }

    fn unbind_tunnel_key(&self, key: u32) -> Result<(), DpError> {
        self.call(move |s| {
            s.core.tunnel_ports.remove(&(key & 0x00ff_ffff));
        })
    }

    fn set_tunnel_peers(&self, peers: &[Ipv4Addr]) -> Result<(), DpError> {
        // Built here, swapped in on the datapath thread: no packet sees a
        // half-filled set.
        let set = peers.iter().copied().collect();
        self.call(move |s| s.core.tunnel_peers = Some(set))
    }

    fn set_offload_peers(&self, peers: &[Ipv4Addr]) -> Result<(), DpError> {
        let set = peers.iter().copied().collect();
        self.call(move |s| s.core.tunnel_offload = crate::TunnelOffload::Peers(set))
    }

    fn install_flow(&self, key: FlowKey, flow: FlowInstall) -> Result<FlowId, DpError> {
        self.call(move |s| {
            s.core.tick();
            s.core.install(&key, flow)
        })?
    }

    fn invalidate_tags(&self, tags: Vec<u64>) -> Result<usize, DpError> {
        self.call(move |s| s.core.invalidate_tags(&tags))
    }

    fn flush_flows(&self) -> Result<usize, DpError> {
        self.call(|s| s.core.flush_flows())
    }

    fn execute(&self, frame: Vec<u8>, actions: Actions) -> Result<(), DpError> {
        self.call(move |s| {
            s.core.execute_generated(&frame, &actions);
            s.core.flush();
        })
    }

    fn stats(&self) -> Result<DpStats, DpError> {
        self.call(|s| {
            s.housekeeping_counters_only();
            s.core.stats()
        })
    }

    fn dump_flows(&self) -> Result<Vec<FlowInfo>, DpError> {
        self.call(|s| {
            s.core.tick();
            s.core.dump_flows()
        })
    }
}

impl State {
    /// Pull the kernel's receive-drop counters without expiring flows.
    fn housekeeping_counters_only(&mut self) {
        let mut overrun = 0u64;
        for pio in self.core.io.ports.iter().flatten() {
            overrun += u64::from(pio.sock.take_kernel_drops());
        }
        self.core.counters.drops.add(DropReason::RxOverrun, overrun);
    }
}
