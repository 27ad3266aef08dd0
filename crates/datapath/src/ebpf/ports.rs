//! Vports (a TC hook on an interface, a slot in the ports maps), the
//! tunnel keys bound to them, and the set of tunnel peers the kernel
//! accepts VXLAN from.

use std::net::Ipv4Addr;

use super::loader::Prog;
use super::{abi, io_err, netlink, stale_keys, PortEntry, State};
use crate::{DpError, PortNo};

impl State {
    fn port_of(&self, p: PortNo) -> Option<&PortEntry> {
        self.ports.get(p as usize).and_then(Option::as_ref)
    }

    pub(super) fn add_vport(&mut self, ifname: &str) -> Result<PortNo, DpError> {
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
            if let Ok(z) = aya::maps::PerCpuValues::try_from(vec![[0u64; 5]; self.k.ncpus()]) {
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

    pub(super) fn drop_port(&mut self, p: PortNo, ifindex: u32) {
        let _ = self.bpf.detach(&format!("port-{p}"));
        let _ = self.bpf.maps.if_ports.remove(&ifindex);
        let _ = self.bpf.maps.ports.set(p, [0u8; abi::PORT_LEN], 0);
        let keys: Vec<u32> = self.vnis.iter().filter(|(_, v)| **v == p).map(|(k, _)| *k).collect();
        for k in keys {
            self.vnis.remove(&k);
            let _ = self.bpf.maps.vni_ports.remove(&k);
        }
    }

    pub(super) fn remove_vport(&mut self, p: PortNo) -> Result<(), DpError> {
        let e =
            self.ports.get_mut(p as usize).and_then(Option::take).ok_or(DpError::NoSuchPort(p))?;
        self.drop_port(p, e.ifindex);
        Ok(())
    }

    pub(super) fn bind_tunnel_key(&mut self, key: u32, p: PortNo) -> Result<(), DpError> {
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

    pub(super) fn unbind_tunnel_key(&mut self, key: u32) {
        let vni = key & 0x00ff_ffff;
        self.vnis.remove(&vni);
        let _ = self.bpf.maps.vni_ports.remove(&vni);
    }

    /// Replace the kernel's tunnel peers with `peers` and turn the filter
    /// on. New peers go in before old ones leave, so a peer in both sets is
    /// never refused in between; the filter goes on last, once the set is
    /// complete. An adopted set (the previous agent's) is diffed the same.
    pub(super) fn set_tunnel_peers(&mut self, peers: &[Ipv4Addr]) -> Result<(), DpError> {
        let map_err =
            |e: aya::maps::MapError| io_err("tunnel peers", std::io::Error::other(e.to_string()));
        let want: std::collections::HashSet<u32> = peers.iter().map(|a| u32::from(*a)).collect();
        for ip in &want {
            self.bpf.maps.tunnel_peers.insert(ip, 1, 0).map_err(map_err)?;
        }
        for k in stale_keys(&self.bpf.maps.tunnel_peers, |k| want.contains(k)) {
            self.bpf.maps.tunnel_peers.remove(&k).map_err(map_err)?;
        }
        self.bpf.maps.tunnel_filter.set(0, 1, 0).map_err(map_err)?;
        self.peers = peers.to_vec();
        self.refresh_nexthops();
        Ok(())
    }
}
