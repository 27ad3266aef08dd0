//! The `ebpf` provider: the kernel forwards, the agent decides.
//!
//! ```text
//!  VM veth host end ─TC─ mdp_port ─┐                       ┌─ redirect_peer ─> VM (other netns)
//!  vxlan (external) ─TC─ mdp_tunnel┼─ megaflow hit ─ actions┼─ clone/redirect ─> VM veth
//!    VNI bound here: straight out  │                       ├─ encapsulate ─ redirect_neigh ─> underlay
//!  underlay ─TC─ mdp_underlay: a bound VNI's datagram is   └─ or set tunnel key ─> vxlan ─> underlay
//!    decapsulated and sent straight out; the rest goes on to the stack (and vxlan)
//!                                  └─ miss ─> ring buffer ─┐
//!  datapath thread (this module) <──────────────────────────┘ epoll
//!    agent's table hit, or handler.on_miss ─> install (maps) + re-inject the packet
//!    packet-out / re-injection: AF_PACKET ─> inject veth ─TC─ mdp_inject (mark = action list)
//! ```
//!
//! * The programs (`bpf/datapath.c`) and what runs in the kernel versus in
//!   the agent ([`abi`]); the kernel's slots ([`kernel`]); the agent's copy
//!   of the table ([`flows`]); loading and pinning ([`loader`]).
//! * The datapath thread's [`State`] is declared here and its methods live
//!   by concern: setup, adoption of an earlier agent's pins, the run loop
//!   and teardown (`lifecycle`); vports, tunnel keys and tunnel peers
//!   (`ports`); installing, expiring and dumping flows and the counters
//!   (`table`); misses from the ring buffer, the handler's answers and
//!   execution by injection (`upcall`). The [`EbpfDatapath`] handle runs
//!   them on the thread.
//! * One datapath thread (optionally in a named netns) owns everything:
//!   control calls are closures run on it between ring-buffer batches, as
//!   in the userspace provider, and the upcall handler runs inline on it.
//! * Misses never cost a syscall per hit packet: the hit path is entirely
//!   in the kernel; the ring buffer wakes the thread only for misses.
//! * Maps and TC links are pinned under `/run/midonet/bpf/ns-<netns
//!   cookie>/` (a bpffs of its own, see [`loader::ensure_bpffs`]):
//!   dropping the provider (or the agent exiting) leaves the kernel
//!   forwarding with the installed flows; the next start adopts them (flows
//!   with their tags, ports with their numbers, tunnel keys) and swaps the
//!   programs in place. [`EbpfDatapath::destroy`] removes it all.
//!
//! ## Flow lookup: masks + per-mask hash, in the kernel
//!
//! The other choice was exact-match entries derived by the agent from its
//! megaflows (the kernel holds 5-tuple-like keys, the agent's table holds
//! the megaflows). It costs one hash lookup per packet, but every new
//! microflow (a new TCP connection through an existing bridge flow) is a
//! miss, an upcall and a map update; a restarting agent cannot serve those
//! misses; and the kernel table grows with connections, not with
//! megaflows. Tuple-space search keeps the megaflow meaning in the kernel:
//! one entry per megaflow, new connections hit at once, and an agent
//! restart stops nothing that an installed megaflow covers. Its cost is
//! one masked hash lookup per distinct mask until the hit, with the masks
//! probed busiest first; `tests/ebpf.rs::lookup_cost_by_mask_count`
//! measures it (BPF_PROG_TEST_RUN, 200 000 runs of `mdp_port` on a 64-byte
//! UDP frame, three runs on the shared 2-core box at load 6-8): floor
//! (the inject program's cheapest path) 39-50 ns, hit behind 1 mask
//! 215-284 ns, behind 4 masks 347-382 ns, behind 16 masks 903-1251 ns:
//! about 45 ns per mask probed, plus a fixed ~180 ns for the port lookup,
//! parse, counters and action list. The fixed part is well above the
//! peers/ebpf prototype's 70 ns (32-byte key, two lookups).
//!
//! ## The exact-match cache in front of it
//!
//! What the search costs a connection's later packets is paid again and
//! again, and on a CPU just out of idle it is not the instructions but the
//! distinct maps and code a run touches (each a cache and TLB miss:
//! docs/PERFORMANCE.md, issue 11). So a megaflow hit leaves an entry in
//! `mdp_exact`, an LRU hash keyed by the packet's whole parsed key (with
//! the receiving ifindex for in_port, so a hit needs no port lookup, and
//! TCP flags zeroed, so one entry serves a connection's SYN, ACKs and FIN;
//! flows whose mask reads TCP flags are not cached). The entry holds the
//! flow's counter slot and port and, when its actions are rewrites of the
//! MACs, the TTL and NAT's addresses and ports, then one output or tunnel,
//! those actions in a fixed form run without the action list (a NAT
//! rewrite still goes through the list's code for one action, `mdp_act`). It is the prototype's shape with the megaflow
//! meaning kept: the kernel fills it, not the agent, so a new connection
//! through an existing megaflow is still no miss. Validity: an entry
//! records `mdp_flow_gen[slot]` when filled; [`kernel::Kernel`] changes
//! that word whenever the slot's flow goes (invalidation, expiry,
//! overwrite) and rests a freed slot for [`kernel::SLOT_REST`]; the program
//! re-checks the flow after filling, which closes the race with a removal
//! (`exact_fill`). `ebpf_exact_cache = false` in the agent's config (here
//! [`EbpfConfig::exact_cache`]) turns it off.
//!
//! * Tunnel sources: `mdp_tunnel` drops a datagram whose outer source (the
//!   vxlan device's tunnel key, `remote_ipv4`) is not in the pinned
//!   `mdp_tunnel_peers` map once the agent has pushed a set
//!   ([`Datapath::set_tunnel_peers`] sets `mdp_tunnel_filter`); counted as
//!   [`DropReason::TunnelUnknownSource`]. Two map lookups (a one-slot
//!   array, then a hash probe) per tunnel packet. The maps are new pins
//!   beside the old ones, so an older agent's pins still load.
//! * Interop: a host running this provider speaks plain RFC 7348 VXLAN
//!   (kernel vxlan device, UDP checksums on, GSO segmented by the sender's
//!   underlay); the userspace provider's private offload bits in the VXLAN
//!   header would make a kernel VTEP drop its frames, so hosts of one
//!   deployment run the same provider.
//!
//! ## The tunnel without the vxlan device
//!
//! The kernel's vxlan device costs every tunnel packet a route lookup
//! (`bpf_skb_set_tunnel_key` gives it no cached route), the local output
//! path with its netfilter hooks, and on the receiving host the IP and UDP
//! receive, the socket lookup, `vxlan_rcv` and a GRO cell: measured, the
//! largest share the datapath adds to a new connection (docs/PERFORMANCE.md,
//! issue 13). So once the host's tunnel address is known
//! ([`EbpfConfig::underlay_ip`], else the topology's, through
//! [`Datapath::set_tunnel_local`]) the programs do both ends themselves:
//!
//! * `mdp_underlay`, at the ingress of the interface holding that address,
//!   takes a VXLAN datagram for a VNI bound to a local port (IPv4 without
//!   options, not a fragment, the plain VNI flag, an IPv4 frame inside),
//!   strips the outer headers with `bpf_skb_adjust_room` and redirects the
//!   frame to the port, after the same tunnel-source check as
//!   `mdp_tunnel`. Everything else goes on into the stack untouched. A GSO
//!   aggregate always does: this kernel (6.18) cannot clear a decapsulated
//!   packet's tunnel GSO state from BPF (`BPF_F_ADJ_ROOM_DECAP_L4_UDP`
//!   came later), and left stale it would break the inner packet's
//!   segmentation if the VM forwards it; the vxlan device clears it. (A
//!   single frame keeps one thing the device would clear only where the
//!   underlay is a veth, as in the tests and benches: the sender's
//!   `skb->encapsulation`, which a veth carries across and BPF cannot
//!   reset; harmless for local delivery, and a real NIC's skb is new.)
//! * A tunnel output that is the flow's last action, of an IPv4 frame (a
//!   single one that fits the underlay's MTU, or a TCP GSO frame, marked as
//!   a UDP tunnel's so the stack or the NIC segments it with the inner
//!   headers, its segments keeping their size) to a peer in
//!   `mdp_tunnel_nh` (its route's interface, that interface's MTU, the
//!   next hop), is encapsulated in the program (outer IPv4 with the
//!   tunnel address as source and a random ID, UDP with checksum zero and
//!   the source port from the inner flow's hash over 32768–60999, as the
//!   device picks it, VXLAN) and sent with `bpf_redirect_neigh` to the next
//!   hop the agent read from the routing table for that peer (on a new peer
//!   set, a new address and every 5 s). The rest (ARP; clones; a frame the
//!   device would fragment; a GSO frame `bpf_skb_adjust_room` refuses; a
//!   peer with no unicast route) takes the device as before.
//! * Both are on by default (`ebpf_tunnel_decap`, `ebpf_tunnel_encap` in
//!   the agent's config); the wire format is the device's, so a host with
//!   either off, or with the vxlan device alone, interoperates.
//!
//! ## Reverse NAT in the kernel: flows split at a reverse lookup
//!
//! A reply of a NATed connection (server → the NAT address and port) used
//! to miss in the kernel once per connection: the agent's reverse lookup
//! read its whole 5-tuple, so its flow had to be exact on it. The agent now
//! splits such a flow ([`crate::MissDecision::recirc`]): a first half
//! matching what the simulation read before the lookup, whose only action
//! is [`Action::RevNatRecirc`]`(id)`, and second halves keyed by the
//! translated packet under in_port [`crate::RECIRC_PORT_BASE`]` + id`.
//! `flow_path` in `bpf/datapath.c` runs it with one recirculation:
//!
//! * the reply (IPv4 TCP or UDP, not a later fragment) is looked up in
//!   `mdp_rev_nat` under the tracker and kind `mdp_recirc[id]` names
//!   ([`revnat`]: the agent's bindings, an LRU hash of 131,072);
//! * the translated key is searched again under the recirculation's
//!   in_port; only on that second hit is the packet rewritten (address and
//!   port, checksums fixed up), counted on both flows and sent on by the
//!   second flow's actions. No binding, no second half: the packet goes up
//!   unchanged with its own in_port, and the agent simulates it (an upcall
//!   that hits a first half in the agent's table goes to the handler too);
//! * the exact-match cache is neither used nor filled on this path: an
//!   entry could outlive its binding;
//! * a binding records when a reply last used it and the TCP flags of its
//!   replies, which the agent reads back
//!   ([`crate::RevNatTable::used_since`]) to keep the binding alive, or
//!   let it close, as a per-connection flow's counters would tell it;
//! * the search is a global BPF function (`mdp_rev_nat_path`), verified
//!   once: inlined, it pushed `mdp_port` past the verifier's million
//!   instructions (from about 646,000 to more). With it, `mdp_port`
//!   verifies in about 617,000 and `mdp_tunnel` in 651,000 on 6.18.
//!
//! `mdp_state`, a socket filter the agent attaches to its flow-state UDP
//! socket ([`crate::RevNatTable::attach_state_socket`]), writes the SNAT
//! and DNAT bindings of every message (TCP and UDP, at most 16 a message)
//! into `mdp_rev_nat` under their replies' keys as the kernel queues the
//! datagram, so a reply right behind its connection's first packet can
//! already hit. It takes nothing from a sender that is not a tunnel peer
//! (nothing at all before the agent named its peers: unlike a tunnel
//! datagram, a binding taken here is used without the agent ever seeing
//! it), another version, a request or a datagram
//! shorter than it says, never replaces a binding this host allocated, and
//! never changes delivery: the agent reads and checks every message itself.
//! Counted in [`DpStats`] (`rev_nat_hits`, `rev_nat_misses`,
//! `state_bindings`, `state_rejected`). Both maps are pinned, so split
//! flows, their recirculation ids and bindings survive an agent restart.
//!
//! Where a split's second halves read conntrack (`matchReturnFlow` after
//! the reverse rule: `midonet_sim::Split::conntrack`), `mdp_recirc_ct[id]`
//! names the tracking device, and the first half looks for the reply's
//! connection in `mdp_ct` (its forward 5-tuple at that device, as
//! [`CtKey`](crate::CtKey)): found, the second lookup is under the
//! recirculation's in-port; not found (`ct_misses`), under its untracked
//! variant ([`crate::RECIRC_UNTRACKED`]), where only second halves that
//! read no conntrack wait. The agent keeps `mdp_ct` equal to its TCP and UDP
//! connections, `mdp_state` adds a message's as it arrives
//! (`state_conns`), and each entry's last use and TCP flags refresh and
//! close the agent's copy (`RevNatTable::ct_used_since`).
//!
//! [`Action::RevNatRecirc`]: midonet_flow::Action::RevNatRecirc
//! [`DropReason::TunnelUnknownSource`]: crate::DropReason::TunnelUnknownSource

pub mod abi;
pub mod flows;
pub mod kernel;
mod lifecycle;
pub mod loader;
pub mod netlink;
mod ports;
pub mod revnat;
mod sys;
mod table;
mod upcall;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use midonet_flow::{Actions, FlowKey, InPort, ParseError};
use parking_lot::Mutex;

use self::flows::FlowIndex;
use self::kernel::Kernel;
use self::loader::Bpf;
use crate::sys::{Poller, VnetHdr, Waker};
use crate::workers::{Miss, Workers};
use crate::{
    Datapath, DpError, DpStats, DropCounters, FlowId, FlowInfo, FlowInstall, MissDecision,
    MissTiming, PortNo, RevNatTable, TableConfig, UpcallHandler,
};

/// Configuration of an [`EbpfDatapath`].
#[derive(Debug, Clone)]
pub struct EbpfConfig {
    /// Instance name: thread name and pin directory.
    pub name: String,
    /// Run inside `/run/netns/<netns>`.
    pub netns: Option<String>,
    /// Source address of the tunnel's outer header; `None` = the route's.
    pub underlay_ip: Option<Ipv4Addr>,
    /// VXLAN UDP port of the vxlan device.
    pub vxlan_port: u16,
    /// The vxlan device (created in external mode when missing).
    pub vxlan_dev: String,
    /// The inject veth pair: the agent sends on the first, `mdp_inject`
    /// runs at the second's ingress.
    pub inject_devs: (String, String),
    /// Where the pins go.
    pub pin_root: PathBuf,
    /// The pin directory's name under `pin_root`; `None` = `ns-<cookie of
    /// the network namespace>`, so agents in different namespaces of one
    /// host never share maps and a restart in the same one finds its own.
    pub pin_name: Option<String>,
    pub table: TableConfig,
    /// How long ports adopted from an earlier agent wait to be added
    /// again before they are detached.
    pub adopt_grace: Duration,
    /// Upcall budgets per port and for the tunnel, enforced in the kernel
    /// before a miss is copied to the agent ([`crate::limit`]).
    pub limits: crate::UpcallLimits,
    /// Serve established flows from the programs' exact-match cache (one
    /// hash lookup, actions in a fixed form) before the megaflow search.
    pub exact_cache: bool,
    /// Decapsulate tunnel datagrams in `mdp_underlay`, at the ingress of
    /// the interface holding the tunnel address (`underlay_ip`, else the
    /// address [`Datapath::set_tunnel_local`] names), instead of in the
    /// kernel's vxlan device.
    pub tunnel_decap: bool,
    /// Encapsulate tunnel packets in the programs (a single IPv4 frame that
    /// fits the underlay, to a peer with a unicast route) and send them
    /// through the neighbour table, instead of through the vxlan device.
    /// Needs the tunnel address, as `tunnel_decap`.
    pub tunnel_encap: bool,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            name: "midonet-dp".into(),
            netns: None,
            underlay_ip: None,
            vxlan_port: crate::vxlan::VXLAN_PORT,
            vxlan_dev: "mdp-vx0".into(),
            inject_devs: ("mdp-inj0".into(), "mdp-inj1".into()),
            pin_root: PathBuf::from(loader::PIN_ROOT),
            pin_name: None,
            table: TableConfig::default(),
            adopt_grace: Duration::from_secs(60),
            limits: crate::UpcallLimits::default(),
            exact_cache: true,
            tunnel_decap: true,
            tunnel_encap: true,
        }
    }
}

/// Whether this build and kernel can run the provider (`Err` says why not).
/// Loading can still fail later (no privileges, a locked-down kernel).
pub fn available() -> Result<(), String> {
    loader::object()?;
    let v = aya::util::KernelVersion::current().map_err(|e| format!("kernel version: {e}"))?;
    if v < aya::util::KernelVersion::new(6, 6, 0) {
        return Err(format!("kernel {v:?} has no TCX links (needs 6.6)"));
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct PortEntry {
    name: String,
    ifindex: u32,
}

#[derive(Default)]
struct UserCounters {
    drops: DropCounters,
    parse: [u64; ParseError::ALL.len()],
    upcalls: u64,
    ring_batches: u64,
    hits: u64,
    /// Packets sent to the inject veth.
    injected: u64,
    timing: MissTiming,
}

/// The datapath thread's state.
pub struct State {
    bpf: Bpf,
    k: Kernel,
    flows: FlowIndex,
    handler: Option<Box<dyn UpcallHandler>>,
    /// Miss workers ([`crate::workers`]); `None`: `handler` runs inline.
    workers: Option<Workers<VnetHdr>>,
    /// Wakes this thread's poller (the workers' answers).
    wake: Option<std::sync::Arc<Waker>>,
    /// Reused buffer of the workers' answers.
    answers: Vec<(Miss<VnetHdr>, MissDecision)>,
    inject: sys::InjectSocket,
    ports: Vec<Option<PortEntry>>,
    /// Ports an earlier agent attached, by name, until added again.
    adopted_ports: HashMap<String, (PortNo, u32)>,
    vnis: HashMap<u32, PortNo>,
    c: UserCounters,
    /// Kernel inject counters when this instance started.
    inject_base: u64,
    cfg: EbpfConfig,
    /// What the programs were last told (`mdp_config`).
    kcfg: abi::KernelConfig,
    /// The tunnel address and the interface holding it, once known.
    tunnel_at: Option<(Ipv4Addr, String)>,
    /// The tunnel peers last pushed ([`Datapath::set_tunnel_peers`]).
    peers: Vec<Ipv4Addr>,
    /// When the routes to `peers` were last read.
    nexthops_read: Instant,
    /// `pin_root/<instance>`: everything this datapath pinned.
    instance_dir: PathBuf,
    started: Instant,
    stop: bool,
}

fn io_err(what: impl Into<String>, source: std::io::Error) -> DpError {
    DpError::Io { what: what.into(), source }
}

/// The keys of `map` that `keep` does not keep: what a sweep removes.
fn stale_keys<V: aya::Pod>(
    map: &aya::maps::HashMap<aya::maps::MapData, u32, V>,
    keep: impl Fn(&u32) -> bool,
) -> Vec<u32> {
    map.keys().filter_map(Result::ok).filter(|k| !keep(k)).collect()
}

fn kernel_sum(bpf: &Bpf, c: u32) -> u64 {
    bpf.maps.counters.get(&c, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

type Ctl = Box<dyn FnOnce(&mut State) + Send>;

/// What the datapath thread hands back once it runs: its waker, whether it
/// adopted pins, the ports it adopted, the reverse-NAT table.
type Ready = (Waker, bool, Vec<(String, u32)>, Arc<revnat::KernelRevNat>);

const RING_TOKEN: u64 = 1;

/// See the module docs. Dropping it stops the thread and leaves the kernel
/// forwarding; [`EbpfDatapath::destroy`] removes the kernel state too.
pub struct EbpfDatapath {
    ctl: Sender<Ctl>,
    waker: Waker,
    thread: Mutex<Option<std::thread::JoinHandle<std::io::Result<()>>>>,
    adopted: bool,
    adopted_ports: Vec<(String, u32)>,
    rev_nat: Arc<revnat::KernelRevNat>,
}

impl EbpfDatapath {
    /// Load (or adopt) the kernel datapath and start its thread.
    pub fn start(
        cfg: EbpfConfig,
        handler: Option<Box<dyn UpcallHandler>>,
    ) -> Result<Self, DpError> {
        available().map_err(|e| io_err("ebpf datapath", std::io::Error::other(e)))?;
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Ctl>();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<Ready, DpError>>(1);
        let name = cfg.name.clone();
        let thread = crate::sys::spawn_in_netns(cfg.name.clone(), cfg.netns.clone(), move || {
            let setup = (|| {
                let st = State::build(cfg, handler)?;
                let poller = Poller::new().map_err(|e| io_err("epoll", e))?;
                use std::os::fd::AsRawFd;
                poller
                    .add(st.bpf.maps.upcalls.as_raw_fd(), RING_TOKEN)
                    .map_err(|e| io_err("epoll add ring", e))?;
                poller
                    .add(st.bpf.maps.upcalls_spare.as_raw_fd(), RING_TOKEN)
                    .map_err(|e| io_err("epoll add spare ring", e))?;
                let w = poller.waker().map_err(|e| io_err("eventfd", e))?;
                Ok::<_, DpError>((st, poller, w))
            })();
            match setup {
                Ok((mut st, mut poller, w)) => {
                    st.wake = poller.waker().ok().map(std::sync::Arc::new);
                    let kept =
                        st.adopted_ports.iter().map(|(n, (_, ifx))| (n.clone(), *ifx)).collect();
                    let rn = st.bpf.rev_nat.clone();
                    let _ = ready_tx.send(Ok((w, st.bpf.adopted, kept, rn)));
                    st.run(&ctl_rx, &mut poller);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
            Ok(())
        })
        .map_err(|e| io_err(format!("spawn {name}"), e))?;
        let (waker, adopted, adopted_ports, rev_nat) = match ready_rx.recv() {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                return Err(match thread.join() {
                    Ok(Err(e)) => io_err(format!("netns of {name}"), e),
                    _ => DpError::Gone,
                })
            }
        };
        Ok(EbpfDatapath {
            ctl: ctl_tx,
            waker,
            thread: Mutex::new(Some(thread)),
            adopted,
            adopted_ports,
            rev_nat,
        })
    }

    /// Whether this start found and adopted an earlier agent's kernel state.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The interfaces (name, ifindex) an earlier agent had as ports, found
    /// pinned at start (each keeps its port number when added again).
    pub fn adopted_ports(&self) -> &[(String, u32)] {
        &self.adopted_ports
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

    pub fn set_handler(&self, handler: Option<Box<dyn UpcallHandler>>) -> Result<(), DpError> {
        self.call(move |s| s.handler = handler)
    }

    /// Simulate misses on one worker thread per handler
    /// ([`crate::workers`]); an empty list goes back to the inline handler.
    pub fn set_miss_workers(&self, handlers: Vec<Box<dyn UpcallHandler>>) -> Result<(), DpError> {
        self.call(move |s| s.set_workers(handlers))?
    }

    /// Run idle expiry now; returns how many flows went.
    pub fn expire(&self) -> Result<usize, DpError> {
        self.call(|s| s.expire())
    }

    /// Stop the thread; the kernel keeps forwarding.
    pub fn shutdown(&self) {
        let _ = self.ctl.send(Box::new(|s: &mut State| s.stop = true));
        self.waker.wake();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }

    /// Detach everything, delete our devices and pins, then stop.
    pub fn destroy(&self) {
        let _ = self.call(|s| s.destroy());
        self.shutdown();
    }
}

impl Drop for EbpfDatapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Datapath for EbpfDatapath {
    fn add_vport(&self, ifname: &str) -> Result<PortNo, DpError> {
        let n = ifname.to_owned();
        self.call(move |s| s.add_vport(&n))?
    }

    fn remove_vport(&self, port: PortNo) -> Result<(), DpError> {
        self.call(move |s| s.remove_vport(port))?
    }

    fn bind_tunnel_key(&self, key: u32, port: PortNo) -> Result<(), DpError> {
        self.call(move |s| s.bind_tunnel_key(key, port))?
    }

    fn unbind_tunnel_key(&self, key: u32) -> Result<(), DpError> {
        self.call(move |s| s.unbind_tunnel_key(key))
    }

    fn set_tunnel_peers(&self, peers: &[Ipv4Addr]) -> Result<(), DpError> {
        let peers = peers.to_vec();
        self.call(move |s| s.set_tunnel_peers(&peers))?
    }

    fn set_tunnel_local(&self, addrs: &[Ipv4Addr]) -> Result<(), DpError> {
        let addrs = addrs.to_vec();
        self.call(move |s| s.set_tunnel_local(&addrs))?
    }

    /// Nothing to do: frames leave through the kernel's vxlan device, which
    /// segments and checksums them and sends plain RFC 7348 to every peer.
    fn set_offload_peers(&self, _peers: &[Ipv4Addr]) -> Result<(), DpError> {
        Ok(())
    }

    fn install_flow(&self, key: FlowKey, flow: FlowInstall) -> Result<FlowId, DpError> {
        self.call(move |s| s.install(&key, flow))?
    }

    fn invalidate_tags(&self, tags: Vec<u64>) -> Result<usize, DpError> {
        self.call(move |s| s.invalidate_for_agent(&tags))
    }

    fn flush_flows(&self) -> Result<usize, DpError> {
        self.call(|s| s.flush_flows())
    }

    fn execute(&self, frame: Vec<u8>, actions: Actions) -> Result<(), DpError> {
        self.call(move |s| {
            s.execute(&frame, VnetHdr::default(), &actions, InPort::Port(0), 0);
            s.sync_injects();
        })
    }

    fn stats(&self) -> Result<DpStats, DpError> {
        self.call(|s| s.stats())
    }

    fn dump_flows(&self) -> Result<Vec<FlowInfo>, DpError> {
        self.call(|s| s.dump_flows())
    }

    /// The pinned `mdp_rev_nat` and `mdp_recirc` maps ([`revnat`]), which
    /// split flows read in the kernel.
    fn rev_nat(&self) -> Option<Arc<dyn RevNatTable>> {
        Some(self.rev_nat.clone())
    }
}
