//! The `ebpf` provider: the kernel forwards, the agent decides.
//!
//! ```text
//!  VM veth host end ─TC─ mdp_port ─┐                       ┌─ redirect_peer ─> VM (other netns)
//!  vxlan (external) ─TC─ mdp_tunnel┼─ megaflow hit ─ actions┼─ clone/redirect ─> VM veth
//!    VNI bound here: straight out  │                       └─ set tunnel key ─> vxlan ─> underlay
//!                                  └─ miss ─> ring buffer ─┐
//!  datapath thread (this module) <──────────────────────────┘ epoll
//!    agent's table hit, or handler.on_miss ─> install (maps) + re-inject the packet
//!    packet-out / re-injection: AF_PACKET ─> inject veth ─TC─ mdp_inject (mark = action list)
//! ```
//!
//! * The programs (`bpf/datapath.c`) and what runs in the kernel versus in
//!   the agent ([`abi`]); the kernel's slots ([`kernel`]); the agent's copy
//!   of the table ([`flows`]); loading and pinning ([`loader`]).
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
//! peers/ebpf prototype's 70 ns (32-byte key, two lookups); a per-CPU
//! cache in front of the masks and fewer map lookups per packet are the
//! next things to try.
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

pub mod abi;
pub mod flows;
pub mod kernel;
pub mod loader;
pub mod netlink;
mod sys;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use midonet_flow::{Action, Actions, FlowKey, InPort, ParseError};
use parking_lot::Mutex;

use self::flows::{Entry, FlowIndex};
use self::kernel::Kernel;
use self::loader::{Bpf, Prog};
use crate::sys::{Poller, VnetHdr, Waker};
use crate::workers::{Miss, Workers};
use crate::{
    Datapath, DpError, DpStats, DropCounters, DropReason, FlowId, FlowInfo, FlowInstall,
    MissDecision, MissTiming, PortCounters, PortNo, PortStats, TableConfig, TableStats,
    UpcallHandler,
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
    /// `pin_root/<instance>`: everything this datapath pinned.
    instance_dir: PathBuf,
    started: Instant,
    stop: bool,
}

fn io_err(what: impl Into<String>, source: std::io::Error) -> DpError {
    DpError::Io { what: what.into(), source }
}

fn kernel_sum(bpf: &Bpf, c: u32) -> u64 {
    bpf.maps.counters.get(&c, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

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
    fn build(cfg: EbpfConfig, handler: Option<Box<dyn UpcallHandler>>) -> Result<State, DpError> {
        let instance = match &cfg.pin_name {
            Some(n) => n.clone(),
            None => format!("ns-{}", sys::netns_cookie().map_err(|e| io_err("netns cookie", e))?),
        };
        let instance_dir = cfg.pin_root.join(&instance);
        collect_orphans(&cfg.pin_root, &instance);
        let dir = instance_dir.join(loader::ABI_HASH);
        let mut bpf = Bpf::load(&dir).map_err(|e| io_err("loading the BPF datapath", e))?;
        let vx = match netlink::link(&cfg.vxlan_dev).map_err(|e| io_err("netlink", e))? {
            Some(l) => l,
            None => {
                netlink::create_vxlan(&cfg.vxlan_dev, cfg.vxlan_port, None)
                    .map_err(|e| io_err(format!("creating vxlan device {}", cfg.vxlan_dev), e))?;
                netlink::link(&cfg.vxlan_dev).map_err(|e| io_err("netlink", e))?.ok_or_else(
                    || io_err(cfg.vxlan_dev.clone(), std::io::ErrorKind::NotFound.into()),
                )?
            }
        };
        netlink::set_up(vx.ifindex).map_err(|e| io_err("vxlan up", e))?;
        let (ia, ib) = (&cfg.inject_devs.0, &cfg.inject_devs.1);
        if netlink::link(ia).map_err(|e| io_err("netlink", e))?.is_none() {
            netlink::create_veth(ia, ib, 65_535)
                .map_err(|e| io_err(format!("creating inject veth {ia}"), e))?;
        }
        for d in [ia, ib] {
            netlink::disable_ipv6(d);
            let l = netlink::link(d)
                .map_err(|e| io_err("netlink", e))?
                .ok_or_else(|| io_err(d.clone(), std::io::ErrorKind::NotFound.into()))?;
            netlink::set_up(l.ifindex).map_err(|e| io_err("inject veth up", e))?;
        }
        bpf.maps
            .config
            .set(0, abi::encode_config(vx.ifindex, netlink::unspecified(cfg.underlay_ip)), 0)
            .map_err(|e| io_err("config map", std::io::Error::other(e.to_string())))?;
        bpf.maps
            .limit_config
            .set(0, cfg.limits.costs(), 0)
            .map_err(|e| io_err("limit config map", std::io::Error::other(e.to_string())))?;
        bpf.attach(Prog::Tunnel, &cfg.vxlan_dev, "vxlan").map_err(|e| io_err("tunnel hook", e))?;
        bpf.attach(Prog::Inject, ib, "inject").map_err(|e| io_err("inject hook", e))?;
        let inject = sys::InjectSocket::open(ia).map_err(|e| io_err("inject socket", e))?;
        let k = Kernel::new().map_err(|e| io_err("cpus", e))?;
        let inject_base = kernel_sum(&bpf, abi::counter::INJECT)
            + kernel_sum(&bpf, abi::counter::DROP_STALE_EXEC);
        let mut st = State {
            bpf,
            k,
            flows: FlowIndex::default(),
            handler,
            workers: None,
            wake: None,
            answers: Vec::new(),
            inject,
            ports: Vec::new(),
            adopted_ports: HashMap::new(),
            vnis: HashMap::new(),
            c: UserCounters::default(),
            inject_base,
            cfg,
            instance_dir,
            started: Instant::now(),
            stop: false,
        };
        if st.bpf.adopted {
            st.adopt();
        }
        Ok(st)
    }

    /// Take over what an earlier agent left in the pinned maps.
    fn adopt(&mut self) {
        for p in 1..abi::MAX_PORTS {
            if let Ok(b) = self.bpf.maps.ports.get(&p, 0) {
                let (ifindex, _, name) = abi::decode_port(&b);
                if ifindex != 0 {
                    self.adopted_ports.insert(name, (p, ifindex));
                }
            }
        }
        let vnis: Vec<(u32, u32)> = self.bpf.maps.vni_ports.iter().flatten().collect();
        self.vnis.extend(vnis);
        let flows: Vec<(abi::KeyBytes, [u8; 8])> = self.bpf.maps.flows.iter().flatten().collect();
        let mut used = std::collections::HashSet::new();
        let now = sys::monotonic_ns();
        let mut dropped = 0;
        for (map_key, val) in flows {
            let (act, stats) = abi::decode_flow(&val);
            let slot = ((u32::from_ne_bytes([map_key[0], map_key[1], map_key[2], map_key[3]])
                >> abi::MASK_ID_SHIFT)
                & 0x7f) as u8;
            let mask_bytes = self.bpf.maps.masks.get(&u32::from(slot), 0).ok();
            let acts = self.bpf.maps.actions.get(&act, 0).ok();
            let meta = self.bpf.maps.flow_meta.get(&stats, 0).ok().map(|m| abi::decode_meta(&m));
            let (Some(mb), Some(ab), Some(meta)) = (mask_bytes, acts, meta) else {
                let _ = self.bpf.maps.flows.remove(&map_key);
                dropped += 1;
                continue;
            };
            let (Some(actions), Some(tags)) = (abi::decode_actions(&ab), meta.tags) else {
                let _ = self.bpf.maps.flows.remove(&map_key);
                dropped += 1;
                continue;
            };
            let mask = abi::decode_mask(&mb);
            let key = abi::decode_flow_key(&map_key);
            let off = kernel::Offloaded { map_key, mask_slot: slot, act, stats };
            self.k.adopt(&self.bpf.maps, &off, &mb);
            used.insert(stats);
            self.flows.insert(Entry {
                mask,
                masked: mask.apply(&key),
                actions,
                tags,
                idle_timeout_ms: meta.idle_ms,
                packets: 0,
                tcp_flags: 0,
                bytes: 0,
                created_ns: now,
                used_ns: 0,
                known_used_ns: now,
                off: Some(off),
            });
        }
        self.k.finish_adoption(&used);
        tracing::info!(
            flows = self.flows.len(),
            dropped,
            ports = self.adopted_ports.len(),
            tunnel_keys = self.vnis.len(),
            "ebpf datapath: adopted the kernel state of an earlier agent"
        );
    }

    fn port_of(&self, p: PortNo) -> Option<&PortEntry> {
        self.ports.get(p as usize).and_then(Option::as_ref)
    }

    fn add_vport(&mut self, ifname: &str) -> Result<PortNo, DpError> {
        if self.ports.iter().flatten().any(|e| e.name == ifname) {
            return Err(DpError::PortExists(ifname.to_owned()));
        }
        let what = format!("vport {ifname}");
        let info = netlink::link(ifname)
            .map_err(|e| io_err(what.clone(), e))?
            .ok_or_else(|| io_err(what.clone(), std::io::ErrorKind::NotFound.into()))?;
        let adopted = match self.adopted_ports.remove(ifname) {
            Some((p, ifx)) if ifx == info.ifindex && self.port_of(p).is_none() => Some(p),
            _ => None,
        };
        let p = match adopted {
            Some(p) => p,
            None => (1..abi::MAX_PORTS)
                .find(|&p| {
                    self.port_of(p).is_none() && !self.adopted_ports.values().any(|(q, _)| *q == p)
                })
                .ok_or(DpError::TableFull)?,
        };
        let flags = if info.kind.as_deref() == Some("veth") && info.peer_elsewhere {
            abi::PORT_PEER
        } else {
            0
        };
        let m = &mut self.bpf.maps;
        let mut ifp = [0u8; 8];
        ifp[0..4].copy_from_slice(&p.to_ne_bytes());
        let r = m
            .ports
            .set(p, abi::encode_port(info.ifindex, flags, ifname), 0)
            .and_then(|()| m.if_ports.insert(info.ifindex, ifp, 0));
        if let Err(e) = r {
            return Err(io_err(what, std::io::Error::other(e.to_string())));
        }
        if adopted.is_none() {
            if let Ok(z) = aya::maps::PerCpuValues::try_from(vec![[0u64; 4]; self.k.ncpus()]) {
                let _ = m.port_stats.set(p, z, 0);
            }
            // A reused slot starts with a full budget and no counts.
            if let Ok(z) = aya::maps::PerCpuValues::try_from(vec![[0u64; 4]; self.k.ncpus()]) {
                let _ = m.upcall_limits.set(p, z, 0);
            }
        }
        if let Err(e) = self.bpf.attach(Prog::Port, ifname, &format!("port-{p}")) {
            let _ = self.bpf.maps.if_ports.remove(&info.ifindex);
            let _ = self.bpf.maps.ports.set(p, [0u8; abi::PORT_LEN], 0);
            return Err(io_err(what, e));
        }
        if self.ports.len() <= p as usize {
            self.ports.resize(p as usize + 1, None);
        }
        self.ports[p as usize] = Some(PortEntry { name: ifname.to_owned(), ifindex: info.ifindex });
        Ok(p)
    }

    fn drop_port(&mut self, p: PortNo, ifindex: u32) {
        let _ = self.bpf.detach(&format!("port-{p}"));
        let _ = self.bpf.maps.if_ports.remove(&ifindex);
        let _ = self.bpf.maps.ports.set(p, [0u8; abi::PORT_LEN], 0);
        let keys: Vec<u32> = self.vnis.iter().filter(|(_, v)| **v == p).map(|(k, _)| *k).collect();
        for k in keys {
            self.vnis.remove(&k);
            let _ = self.bpf.maps.vni_ports.remove(&k);
        }
    }

    fn remove_vport(&mut self, p: PortNo) -> Result<(), DpError> {
        let e =
            self.ports.get_mut(p as usize).and_then(Option::take).ok_or(DpError::NoSuchPort(p))?;
        self.drop_port(p, e.ifindex);
        Ok(())
    }

    fn bind_tunnel_key(&mut self, key: u32, p: PortNo) -> Result<(), DpError> {
        if self.port_of(p).is_none() {
            return Err(DpError::NoSuchPort(p));
        }
        let vni = key & 0x00ff_ffff;
        self.bpf
            .maps
            .vni_ports
            .insert(vni, p, 0)
            .map_err(|e| io_err("tunnel key", std::io::Error::other(e.to_string())))?;
        self.vnis.insert(vni, p);
        Ok(())
    }

    fn unbind_tunnel_key(&mut self, key: u32) {
        let vni = key & 0x00ff_ffff;
        self.vnis.remove(&vni);
        let _ = self.bpf.maps.vni_ports.remove(&vni);
    }

    /// Replace the kernel's tunnel peers with `peers` and turn the filter
    /// on. New peers go in before old ones leave, so a peer in both sets is
    /// never refused in between; the filter goes on last, once the set is
    /// complete. An adopted set (the previous agent's) is diffed the same.
    fn set_tunnel_peers(&mut self, peers: &[Ipv4Addr]) -> Result<(), DpError> {
        let map_err =
            |e: aya::maps::MapError| io_err("tunnel peers", std::io::Error::other(e.to_string()));
        let want: std::collections::HashSet<u32> = peers.iter().map(|a| u32::from(*a)).collect();
        for ip in &want {
            self.bpf.maps.tunnel_peers.insert(ip, 1, 0).map_err(map_err)?;
        }
        let stale: Vec<u32> = self
            .bpf
            .maps
            .tunnel_peers
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !want.contains(k))
            .collect();
        for k in stale {
            self.bpf.maps.tunnel_peers.remove(&k).map_err(map_err)?;
        }
        self.bpf.maps.tunnel_filter.set(0, 1, 0).map_err(map_err)
    }

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

    fn install(&mut self, key: &FlowKey, f: FlowInstall) -> Result<FlowId, DpError> {
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

    fn invalidate_tags(&mut self, tags: &[u64]) -> usize {
        self.flows.tagged(tags).into_iter().filter(|&id| self.remove_flow(id)).count()
    }

    /// The agent's invalidation (not a miss answer's own): answers in
    /// flight must not install flows it makes stale ([`crate::workers`]).
    fn invalidate_for_agent(&mut self, tags: &[u64]) -> usize {
        if let Some(w) = self.workers.as_mut() {
            w.invalidated(tags);
        }
        self.invalidate_tags(tags)
    }

    fn flush_flows(&mut self) -> usize {
        if let Some(w) = self.workers.as_mut() {
            w.flushed();
        }
        self.flows.ids().into_iter().filter(|&id| self.remove_flow(id)).count()
    }

    /// Kernel and agent counters of a flow, when it last saw a packet, and
    /// the TCP flags it carried.
    fn flow_use(&self, e: &Entry) -> (u64, u64, u64, u16) {
        let (mut p, mut b, mut t, mut f) = (e.packets, e.bytes, e.used_ns, e.tcp_flags);
        if let Some(off) = &e.off {
            let (kp, kb, kt, kf) = self.k.flow_counters(&self.bpf.maps, off);
            p += kp;
            b += kb;
            t = t.max(kt);
            f |= kf;
        }
        (p, b, if t == 0 { e.created_ns } else { t }, f)
    }

    /// Remove flows idle past their timeout; returns how many went. Only
    /// flows idle for their timeout since their last known use are asked
    /// about (`Entry::known_used_ns`): once a second, asking the kernel
    /// about every flow was a syscall per flow on this thread, 65,536 of
    /// them a second with a full table, and misses waited behind them.
    fn expire(&mut self) -> usize {
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
        let mut dead = Vec::new();
        for id in maybe {
            let Some(e) = self.flows.get(id) else { continue };
            let (_, _, used, _) = self.flow_use(e);
            if idle_since(e, used) {
                dead.push(id);
            } else if let Some(e) = self.flows.get_mut(id) {
                e.known_used_ns = used;
            }
        }
        dead.into_iter().filter(|&id| self.remove_flow(id)).count()
    }

    fn housekeeping(&mut self) {
        self.expire();
        self.k.reorder_masks(&mut self.bpf.maps);
        if !self.adopted_ports.is_empty() && self.started.elapsed() >= self.cfg.adopt_grace {
            for (name, (p, ifindex)) in std::mem::take(&mut self.adopted_ports) {
                tracing::info!(port = p, %name, "ebpf datapath: detaching a port no agent took back");
                self.drop_port(p, ifindex);
            }
        }
    }

    fn dump_flows(&self) -> Vec<FlowInfo> {
        let now = sys::monotonic_ns();
        self.flows
            .iter()
            .map(|(id, e)| {
                let (packets, bytes, used, tcp_flags) = self.flow_use(e);
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

    fn stats(&self) -> DpStats {
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
            let (upcalls, upcall_limited) = self
                .bpf
                .maps
                .upcall_limits
                .get(&p, 0)
                .map(|v| v.iter().fold((0, 0), |(u, l), c| (u + c[2], l + c[3])))
                .unwrap_or((0, 0));
            PortCounters {
                rx_packets: s[0],
                rx_bytes: s[1],
                tx_packets: s[2],
                tx_bytes: s[3],
                upcalls,
                upcall_limited,
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
                emc_hits: 0,
                megaflow_hits: kernel_sum(&self.bpf, abi::counter::HIT) + self.c.hits,
                misses: self.c.upcalls,
                flows: self.flows.len(),
                subtables: self.flows.masks(),
                full: 0,
            },
            upcalls: self.c.upcalls,
            rx_batches: self.c.ring_batches,
            workers: self.workers.as_ref().map(Workers::stats).unwrap_or_default(),
            miss_timing: self.c.timing,
        }
    }

    fn drop_pkt(&mut self, r: DropReason) {
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
    fn execute(
        &mut self,
        frame: &[u8],
        vnet: VnetHdr,
        actions: &[Action],
        in_port: InPort,
        depth: u8,
    ) {
        let kernel_ok = !actions.iter().any(|a| matches!(a, Action::Userspace(_)))
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
        let MissDecision { install, execute, generated, invalidate } = d;
        let start = sys::monotonic_ns();
        if !invalidate.is_empty() {
            self.invalidate_tags(&invalidate);
        }
        // The flow first, then the packet: the packet's answer (a SYN-ACK,
        // then the ACK) must find the flow in the kernel, not miss again.
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
        if let Some(id) = self.flows.lookup(&key) {
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

    fn drain_ring(&mut self) -> usize {
        let mut n = 0;
        loop {
            let mut batch: Vec<Vec<u8>> = Vec::new();
            while batch.len() < 64 {
                match self.bpf.maps.upcalls.next() {
                    Some(item) => batch.push(item.to_vec()),
                    None => break,
                }
            }
            if batch.is_empty() {
                return n;
            }
            self.c.ring_batches += 1;
            n += batch.len();
            for rec in &batch {
                self.upcall(rec);
            }
        }
    }

    /// Applies the answers the miss workers have given, in order.
    fn finish_misses(&mut self) {
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
    fn set_workers(&mut self, handlers: Vec<Box<dyn UpcallHandler>>) -> Result<(), DpError> {
        Workers::settle(self, |s| s.workers.as_ref(), Self::finish_misses);
        self.workers = None;
        if handlers.is_empty() {
            return Ok(());
        }
        let wake = self.wake.clone().ok_or(DpError::Gone)?;
        let w = Workers::start(&format!("{}-miss", self.cfg.name), handlers, wake)
            .map_err(|e| io_err("starting the miss workers", e))?;
        self.workers = Some(w);
        Ok(())
    }

    /// Wait (briefly) until the kernel has run every packet injected so
    /// far, so a packet-out is counted when `execute` returns.
    fn sync_injects(&self) {
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

    fn run(&mut self, ctl: &Receiver<Ctl>, poller: &mut Poller) {
        let mut ready = Vec::with_capacity(8);
        let mut last_house = Instant::now();
        while !self.stop {
            if poller.wait(100, &mut ready).is_err() {
                self.drop_pkt(DropReason::RxError);
            }
            for &tok in &ready {
                if tok == crate::sys::WAKE_TOKEN {
                    poller.clear_wake();
                    while let Ok(f) = ctl.try_recv() {
                        f(self);
                    }
                }
            }
            // The ring is drained on every wake-up, not only when epoll
            // says so: a control call may have raced its notification.
            self.drain_ring();
            self.finish_misses();
            if last_house.elapsed() >= Duration::from_secs(1) {
                last_house = Instant::now();
                self.housekeeping();
            }
        }
    }

    /// Remove everything: links, devices, pins (tests; switching away).
    fn destroy(&mut self) {
        for p in 0..self.ports.len() as PortNo {
            let _ = self.remove_vport(p);
        }
        for l in self.bpf.pinned_links() {
            let _ = self.bpf.detach(&l);
        }
        let _ = netlink::delete(&self.cfg.vxlan_dev);
        let _ = netlink::delete(&self.cfg.inject_devs.0);
        let _ = loader::remove_pins(&self.instance_dir);
    }
}

/// Remove the pins of instances whose namespace is gone: their vxlan
/// device went with it, so the TCX link pinned on it is attached nowhere.
/// Without this, every deleted namespace would keep its maps (tens of MB
/// of kernel memory) pinned until reboot.
fn collect_orphans(root: &std::path::Path, mine: &str) {
    let Ok(rd) = std::fs::read_dir(root) else { return };
    for inst in rd.flatten() {
        let name = inst.file_name();
        if name.to_str().is_none_or(|n| n == mine || !n.starts_with("ns-")) {
            continue;
        }
        // Another agent may be starting right now and not have attached
        // yet: leave young instances alone.
        let young = inst
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(120))
            .unwrap_or(true);
        let Ok(versions) = std::fs::read_dir(inst.path()) else { continue };
        if young {
            continue;
        }
        let live = versions.flatten().any(|v| {
            sys::pinned_link_ifindex(&v.path().join("links").join("vxlan")).is_ok_and(|i| i != 0)
        });
        if !live {
            tracing::info!(instance = ?name, "ebpf datapath: removing the pins of a gone namespace");
            let _ = loader::remove_pins(&inst.path());
        }
    }
}

type Ctl = Box<dyn FnOnce(&mut State) + Send>;

const RING_TOKEN: u64 = 1;

/// See the module docs. Dropping it stops the thread and leaves the kernel
/// forwarding; [`EbpfDatapath::destroy`] removes the kernel state too.
pub struct EbpfDatapath {
    ctl: Sender<Ctl>,
    waker: Waker,
    thread: Mutex<Option<std::thread::JoinHandle<std::io::Result<()>>>>,
    adopted: bool,
}

impl EbpfDatapath {
    /// Load (or adopt) the kernel datapath and start its thread.
    pub fn start(
        cfg: EbpfConfig,
        handler: Option<Box<dyn UpcallHandler>>,
    ) -> Result<Self, DpError> {
        available().map_err(|e| io_err("ebpf datapath", std::io::Error::other(e)))?;
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Ctl>();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<(Waker, bool), DpError>>(1);
        let name = cfg.name.clone();
        let thread = crate::sys::spawn_in_netns(cfg.name.clone(), cfg.netns.clone(), move || {
            let setup = (|| {
                let st = State::build(cfg, handler)?;
                let poller = Poller::new().map_err(|e| io_err("epoll", e))?;
                use std::os::fd::AsRawFd;
                poller
                    .add(st.bpf.maps.upcalls.as_raw_fd(), RING_TOKEN)
                    .map_err(|e| io_err("epoll add ring", e))?;
                let w = poller.waker().map_err(|e| io_err("eventfd", e))?;
                Ok::<_, DpError>((st, poller, w))
            })();
            match setup {
                Ok((mut st, mut poller, w)) => {
                    st.wake = poller.waker().ok().map(std::sync::Arc::new);
                    let _ = ready_tx.send(Ok((w, st.bpf.adopted)));
                    st.run(&ctl_rx, &mut poller);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
            Ok(())
        })
        .map_err(|e| io_err(format!("spawn {name}"), e))?;
        let (waker, adopted) = match ready_rx.recv() {
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
        Ok(EbpfDatapath { ctl: ctl_tx, waker, thread: Mutex::new(Some(thread)), adopted })
    }

    /// Whether this start found and adopted an earlier agent's kernel state.
    pub fn adopted(&self) -> bool {
        self.adopted
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
}

#[cfg(test)]
mod tests {
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
