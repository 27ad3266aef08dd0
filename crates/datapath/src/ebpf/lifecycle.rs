//! The datapath thread's life: building its state (devices, maps, hooks),
//! adopting what an earlier agent left pinned, the run loop with its
//! once-a-second housekeeping, and removing everything again; plus the
//! collection of pins whose namespace is gone.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::flows::{Entry, FlowIndex};
use super::kernel::{self, Kernel};
use super::loader::{self, Bpf, Prog};
use super::{
    abi, io_err, kernel_sum, netlink, stale_keys, sys, Ctl, EbpfConfig, State, UserCounters,
};
use crate::sys::Poller;
use crate::{DpError, DropReason, PortNo, UpcallHandler};

/// The pin of `mdp_underlay`'s link.
const UNDERLAY_LINK: &str = "underlay";

/// How often the routes to the tunnel peers are read again.
const NEXTHOP_REFRESH: Duration = Duration::from_secs(5);

impl State {
    pub(super) fn build(
        cfg: EbpfConfig,
        handler: Option<Box<dyn UpcallHandler>>,
    ) -> Result<State, DpError> {
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
        let kcfg = abi::KernelConfig {
            vxlan_ifindex: vx.ifindex,
            local_ip: netlink::unspecified(cfg.underlay_ip),
            vxlan_port: cfg.vxlan_port,
            exact: cfg.exact_cache,
            decap: false,
            encap: false,
        };
        bpf.maps
            .config
            .set(0, abi::encode_config(&kcfg), 0)
            .map_err(|e| io_err("config map", std::io::Error::other(e.to_string())))?;
        write_limits(&mut bpf.maps, &cfg.limits, false)?;
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
            kcfg,
            tunnel_at: None,
            peers: Vec::new(),
            nexthops_read: Instant::now(),
            instance_dir,
            started: Instant::now(),
            stop: false,
        };
        if st.bpf.adopted {
            st.adopt();
        }
        match kcfg.local_ip {
            Some(ip) => st.tunnel_local_at(&[ip]),
            // An earlier agent's, on an address this one has not named yet.
            None => drop(st.bpf.detach(UNDERLAY_LINK)),
        }
        Ok(st)
    }

    /// The topology's tunnel addresses for this host. A configured
    /// `underlay_ip` wins.
    pub(super) fn set_tunnel_local(&mut self, addrs: &[Ipv4Addr]) -> Result<(), DpError> {
        if netlink::unspecified(self.cfg.underlay_ip).is_none() {
            self.tunnel_local_at(addrs);
        }
        Ok(())
    }

    /// The tunnel address is the first of `addrs` a local interface holds.
    /// The programs are told it (the outer source, and the destination
    /// `mdp_underlay` takes datagrams for); `mdp_underlay` goes on that
    /// interface's ingress (`tunnel_decap`), and the programs encapsulate
    /// for the peers they know the way to (`tunnel_encap`). With none
    /// found, every tunnel packet goes through the vxlan device.
    fn tunnel_local_at(&mut self, addrs: &[Ipv4Addr]) {
        let found = addrs.iter().find_map(|a| match netlink::ifname_with(*a) {
            Ok(n) => n.map(|n| (*a, n)),
            Err(e) => {
                tracing::warn!(error = %e, "ebpf datapath: listing interface addresses");
                None
            }
        });
        if found == self.tunnel_at {
            return;
        }
        let _ = self.bpf.detach(UNDERLAY_LINK);
        let mut k = abi::KernelConfig { decap: false, encap: false, ..self.kcfg };
        match &found {
            Some((ip, dev)) => {
                k.local_ip = Some(*ip);
                k.encap = self.cfg.tunnel_encap;
                if self.cfg.tunnel_decap {
                    match self.bpf.attach(Prog::Underlay, dev, UNDERLAY_LINK) {
                        Ok(()) => k.decap = true,
                        Err(e) => tracing::warn!(
                            error = %e, %dev,
                            "ebpf datapath: cannot decapsulate at the underlay's ingress"
                        ),
                    }
                }
                tracing::info!(
                    %ip, %dev, decap = k.decap, encap = k.encap,
                    "ebpf datapath: the tunnel's address; the programs decapsulate at its \
                     interface's ingress and encapsulate themselves where on"
                );
            }
            None if !addrs.is_empty() => tracing::warn!(
                addrs = ?addrs,
                "ebpf datapath: no interface holds the tunnel address; tunnel packets go \
                 through the vxlan device"
            ),
            None => {}
        }
        if let Err(e) = self.bpf.maps.config.set(0, abi::encode_config(&k), 0) {
            tracing::warn!(error = %e, "ebpf datapath: config map");
            return;
        }
        self.kcfg = k;
        self.tunnel_at = found;
        self.refresh_nexthops();
    }

    /// How each tunnel peer is reached, for the programs' own
    /// encapsulation (`mdp_tunnel_nh`): read from the routing table on a
    /// new peer set or tunnel address and every [`NEXTHOP_REFRESH`], so a
    /// route change is followed within that. A peer with no unicast route,
    /// and every peer while encapsulation is off, goes through the vxlan
    /// device (which looks the route up per packet).
    pub(super) fn refresh_nexthops(&mut self) {
        self.nexthops_read = Instant::now();
        let mut want: HashMap<u32, [u8; abi::NEXTHOP_LEN]> = HashMap::new();
        // Peers share a few interfaces: each one's MTU is asked for once.
        let mut mtus: HashMap<u32, Option<u32>> = HashMap::new();
        if self.kcfg.encap {
            for p in &self.peers {
                let way = netlink::route_to(*p).and_then(|r| match r {
                    Some((oif, gw)) => {
                        let mtu = match mtus.get(&oif) {
                            Some(m) => *m,
                            None => {
                                let m = netlink::link_by_index(oif)?.map(|l| l.mtu);
                                mtus.insert(oif, m);
                                m
                            }
                        };
                        Ok(mtu.map(|m| (oif, gw.unwrap_or(*p), m)))
                    }
                    None => Ok(None),
                });
                match way {
                    Ok(Some((oif, via, mtu))) if mtu > 0 => {
                        want.insert(u32::from(*p), abi::encode_nexthop(oif, via, mtu));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, peer = %p, "ebpf datapath: route lookup"),
                }
            }
        }
        for (k, v) in &want {
            if self.bpf.maps.tunnel_nh.get(k, 0).ok().as_ref() != Some(v) {
                if let Err(e) = self.bpf.maps.tunnel_nh.insert(k, v, 0) {
                    tracing::warn!(error = %e, "ebpf datapath: tunnel next hops");
                }
            }
        }
        for k in stale_keys(&self.bpf.maps.tunnel_nh, |k| want.contains_key(k)) {
            let _ = self.bpf.maps.tunnel_nh.remove(&k);
        }
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
        self.k.clear_exact(&mut self.bpf.maps);
        tracing::info!(
            flows = self.flows.len(),
            dropped,
            ports = self.adopted_ports.len(),
            tunnel_keys = self.vnis.len(),
            "ebpf datapath: adopted the kernel state of an earlier agent"
        );
    }

    pub(super) fn run(&mut self, ctl: &Receiver<Ctl>, poller: &mut Poller) {
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

    fn housekeeping(&mut self) {
        self.expire();
        if self.nexthops_read.elapsed() >= NEXTHOP_REFRESH {
            self.refresh_nexthops();
        }
        self.k.reorder_masks(&mut self.bpf.maps);
        if !self.adopted_ports.is_empty() && self.started.elapsed() >= self.cfg.adopt_grace {
            for (name, (p, ifindex)) in std::mem::take(&mut self.adopted_ports) {
                tracing::info!(port = p, %name, "ebpf datapath: detaching a port no agent took back");
                self.drop_port(p, ifindex);
            }
        }
    }

    /// Remove everything: links, devices, pins (tests; switching away).
    pub(super) fn destroy(&mut self) {
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

/// Writes the upcall budgets the programs enforce
/// ([`crate::UpcallLimits::kernel_config_for`]: nothing lent past them while
/// misses go to `workers`).
pub(super) fn write_limits(
    maps: &mut loader::Maps,
    limits: &crate::UpcallLimits,
    workers: bool,
) -> Result<(), DpError> {
    maps.limit_config
        .set(0, limits.kernel_config_for(workers), 0)
        .map_err(|e| io_err("limit config map", std::io::Error::other(e.to_string())))
}
