//! Who may send to this host over the tunnel.
//!
//! A VNI bound to a local port is output by the datapath with no lookup and
//! no simulation: the sending agent already decided. So whoever can put a
//! VXLAN datagram on this host's UDP port with a guessed VNI (tunnel keys are
//! small integers) writes frames straight into a VM, and issue 12 did just
//! that from an underlay address that was in no tunnel zone. The datapath
//! therefore only believes the hosts that share a tunnel zone with this
//! one: their tunnel-zone addresses ([`crate::flowstate::trusted_peers`],
//! the same set flow-state messages are checked against) are pushed to it
//! with [`Datapath::set_tunnel_peers`], and it drops and counts the rest
//! (`midonet_agent_dp_drops_total{reason="tunnel_unknown_source"}`).
//!
//! * The set is pushed when a view is published and the topology is
//!   loaded, and again whenever it changes (a host joins or leaves a zone
//!   this host is in, an address changes, this host changes zones).
//! * Nothing is pushed before the cluster's first snapshot: until then the
//!   datapath accepts every source (its documented start-up state). With
//!   the kernel provider, a restarting agent finds its predecessor's set
//!   still in force in the pinned maps until it pushes its own.
//! * A peer is trusted by the address it registered in the zone, so a host
//!   whose VXLAN leaves from another address (several underlay interfaces,
//!   `tunnel_bind` unset) is refused: register the address it sends from.
//!
//! # Who reads offload metadata
//!
//! A userspace datapath sends a VM's TSO frames and partial checksums
//! across the tunnel as they are, with their state in the VXLAN reserved
//! bits; only a userspace (or dummy) datapath reads those, and a kernel VTEP
//! (an ebpf host's vxlan device, a hardware VTEP) drops the datagram. Each
//! agent registers its provider with its session (`RegisterHostRequest.datapath`,
//! kept in `state/hosts/<id>/alive`), and with `tunnel_offload` unset an
//! agent pushes the tunnel addresses of the live hosts that read the bits
//! with [`Datapath::set_offload_peers`] ([`OffloadPeers`]): offloads cross
//! to them and are finished here for every other destination. A host that
//! did not say (an older agent) gets plain frames, which every VTEP reads.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use midonet_datapath::Datapath;
use midonet_model::{HostId, Topology};

use crate::handler::View;

/// Whether a host registered with `datapath` reads our offload metadata.
pub fn reads_offload(datapath: &str) -> bool {
    matches!(datapath, "userspace" | "dummy")
}

/// The offload peers last pushed to the datapath.
#[derive(Debug, Default)]
pub struct OffloadPeers {
    pushed: Option<Vec<Ipv4Addr>>,
}

impl OffloadPeers {
    /// Pushes the tunnel addresses of `hosts` (live, reading offload
    /// metadata) as seen from `me`, if they differ from the last push.
    pub fn sync(
        &mut self,
        dp: &dyn Datapath,
        topo: &Topology,
        me: HostId,
        hosts: impl IntoIterator<Item = HostId>,
    ) {
        let list = crate::flowstate::migrate::live_peers(topo, me, hosts);
        if self.pushed.as_ref() == Some(&list) {
            return;
        }
        match dp.set_offload_peers(&list) {
            Ok(()) => {
                tracing::info!(peers = ?list, "tunnel peers that get offload metadata");
                self.pushed = Some(list);
            }
            Err(e) => tracing::warn!(error = %e, "could not set the offload peers"),
        }
    }
}

/// Pushes `peers` to `dp` if the topology is loaded (`ready`) and the set
/// differs from what the previous view `prev` held (or `prev` was published
/// before the topology was loaded, so nothing was pushed yet).
pub fn sync_peers(dp: &dyn Datapath, ready: bool, prev: &View, peers: &HashSet<Ipv4Addr>) {
    if !ready || (prev.ready && prev.trusted_peers == *peers) {
        return;
    }
    let mut list: Vec<Ipv4Addr> = peers.iter().copied().collect();
    list.sort_unstable();
    match dp.set_tunnel_peers(&list) {
        Ok(()) => tracing::info!(peers = ?list, "tunnel peers"),
        Err(e) => tracing::warn!(error = %e, "could not set the tunnel peers"),
    }
}

/// This host's own addresses in its tunnel zones, sorted and unique: where
/// its peers send ([`sync_local`]).
pub fn own_addresses(topo: &Topology, me: HostId) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = topo
        .tunnel_zone_hosts
        .values()
        .filter(|m| m.host_id == me)
        .filter_map(|m| m.ip_address)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Tells `dp` this host's own tunnel addresses (`local`) if the topology is
/// loaded and they differ from what the previous view `prev` held.
pub fn sync_local(dp: &dyn Datapath, ready: bool, prev: &View, local: &[Ipv4Addr]) {
    if !ready || (prev.ready && prev.tunnel_local == local) {
        return;
    }
    if let Err(e) = dp.set_tunnel_local(local) {
        tracing::warn!(error = %e, "could not set the tunnel's local addresses");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use midonet_datapath::dummy::DummyDatapath;
    use midonet_datapath::{DropReason, TunnelOffload};
    use midonet_model::{TunnelZoneHost, TunnelZoneId};

    fn view(ready: bool, peers: &[Ipv4Addr]) -> View {
        View { ready, trusted_peers: peers.iter().copied().collect(), ..View::empty() }
    }

    /// Whether `dp` accepts a datagram from `src` (a plain VXLAN header for
    /// an unbound VNI: accepted ones end as another drop reason).
    fn accepts(dp: &DummyDatapath, src: Ipv4Addr) -> bool {
        let before = dp.stats().expect("stats").drops.get(DropReason::TunnelUnknownSource);
        let hdr = midonet_datapath::vxlan::encode(5, &Default::default()).expect("header");
        dp.inject_tunnel_from(src, &[&hdr[..], &[0u8; 60]].concat());
        dp.stats().expect("stats").drops.get(DropReason::TunnelUnknownSource) == before
    }

    #[test]
    fn peers_are_pushed_once_the_topology_is_loaded_and_when_they_change() {
        let (a, b, x) =
            (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 9));
        let dp = DummyDatapath::new(None);
        let set = |v: &[Ipv4Addr]| v.iter().copied().collect::<HashSet<_>>();
        // Not loaded yet: nothing pushed, everything accepted.
        sync_peers(&dp, false, &View::empty(), &set(&[]));
        assert!(accepts(&dp, x));
        // First loaded view: pushed even though the previous view held the
        // same (empty) set.
        sync_peers(&dp, true, &View::empty(), &set(&[a]));
        assert!(accepts(&dp, a) && !accepts(&dp, x));
        // A host joins the zone.
        sync_peers(&dp, true, &view(true, &[a]), &set(&[a, b]));
        assert!(accepts(&dp, b) && !accepts(&dp, x));
        // This host leaves every zone: nobody is a peer.
        sync_peers(&dp, true, &view(true, &[a, b]), &set(&[]));
        assert!(!accepts(&dp, a));
    }

    #[test]
    fn offload_peers_are_the_tunnel_addresses_of_hosts_that_read_the_metadata() {
        let (me, a, b, far) =
            (HostId::random(), HostId::random(), HostId::random(), HostId::random());
        let mut topo = Topology::default();
        let (zone, other_zone) = (TunnelZoneId::random(), TunnelZoneId::random());
        for (z, h, ip) in [
            (zone, me, [10, 0, 0, 1]),
            (zone, a, [10, 0, 0, 2]),
            (zone, b, [10, 0, 0, 3]),
            (other_zone, far, [10, 9, 0, 4]),
        ] {
            topo.insert(&TunnelZoneHost {
                tunnel_zone_id: z,
                host_id: h,
                ip_address: Some(Ipv4Addr::from(ip)),
            });
        }
        let dp = DummyDatapath::new(None);
        let peers =
            |v: &[[u8; 4]]| TunnelOffload::Peers(v.iter().map(|i| Ipv4Addr::from(*i)).collect());
        let mut o = OffloadPeers::default();
        // This host and a host in no shared zone are never peers.
        o.sync(&dp, &topo, me, BTreeSet::from([me, a, far]));
        assert_eq!(dp.tunnel_offload(), peers(&[[10, 0, 0, 2]]));
        o.sync(&dp, &topo, me, BTreeSet::from([a, b]));
        assert_eq!(dp.tunnel_offload(), peers(&[[10, 0, 0, 2], [10, 0, 0, 3]]));
        // The same set is not pushed again.
        dp.set_tunnel_offload(TunnelOffload::Never);
        o.sync(&dp, &topo, me, BTreeSet::from([b, a]));
        assert_eq!(dp.tunnel_offload(), TunnelOffload::Never);
        o.sync(&dp, &topo, me, BTreeSet::new());
        assert_eq!(dp.tunnel_offload(), peers(&[]));
    }
}
