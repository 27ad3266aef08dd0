//! Fragments of a NATed datagram follow their first fragment.
//!
//! NAT needs ports, and only a datagram's first fragment carries them. The
//! kernel's conntrack reassembles before it translates; MidoNet skipped the
//! rule for later fragments (and Neutron's SNAT chain dropped them). Here
//! the first fragment is simulated and translated like a whole datagram,
//! and what the datapath was told to do with it (its rewrites less the L4
//! ones, its outputs) is kept under the datagram's identity as it arrived:
//! ingress port, source, destination, protocol and IP id. A later fragment
//! of that datagram misses (no flow may carry fragments past a NAT rule:
//! `midonet_sim`'s `engine::nat`, "Fragments") and gets the same actions
//! here, without a simulation. Both directions work alike: a reply's first
//! fragment misses at the gateway too, since it cannot take a flow.
//!
//! * Host-local: a datagram's fragments enter at one port of one host.
//! * Entries live [`LIFETIME`] (the kernel's `ipfrag_time`); at most
//!   [`MAX_ENTRIES`], the expired ones dropped first, then new ones refused
//!   (counted).
//! * A later fragment that comes before its first (reordered), or whose
//!   first was not kept, is simulated: the NAT rule skips it, as in MidoNet.
//! * Every fragment through NAT costs a miss; whole datagrams keep their
//!   flows.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use midonet_datapath::{Action, Actions, FlowKey};
use midonet_flow::FragType;
use midonet_model::PortId;

/// How long a first fragment's actions wait for the rest (the kernel's
/// default `net.ipv4.ipfrag_time`).
pub const LIFETIME: Duration = Duration::from_secs(30);

/// Datagrams remembered at once.
pub const MAX_ENTRIES: usize = 16_384;

/// A datagram, as its fragments enter the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramId {
    pub ingress: PortId,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ip_id: u16,
}

impl DatagramId {
    /// The datagram `frame` (whose key is `key`) is a fragment of, if it is
    /// an IPv4 fragment whose header can be read.
    pub fn of(ingress: PortId, key: &FlowKey, frame: &[u8]) -> Option<DatagramId> {
        if key.ethertype != 0x0800 || key.ip_frag == FragType::No {
            return None;
        }
        // Ethernet, then any 802.1Q tags (the key's VLAN is one of them).
        let mut off = 12;
        while frame.get(off..off + 2)? == [0x81, 0x00] {
            off += 4;
        }
        let ip = frame.get(off + 2..off + 2 + 20)?;
        Some(DatagramId {
            ingress,
            src: key.ipv4_src,
            dst: key.ipv4_dst,
            proto: key.ip_proto,
            ip_id: u16::from_be_bytes([ip[4], ip[5]]),
        })
    }
}

/// What [`Fragments::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Kept,
    /// The table is full of live datagrams.
    Full,
}

/// First fragments' actions by datagram (module docs).
#[derive(Default)]
pub struct Fragments {
    by_datagram: HashMap<DatagramId, (Actions, Instant)>,
    /// No entry expires before this (the soonest expiry the last sweep
    /// left; entries added since expire later), so that a table full of
    /// live datagrams is not walked again for every first fragment it
    /// refuses. `None`: not known.
    none_expire_before: Option<Instant>,
}

impl Fragments {
    /// Keeps what the first fragment of `id` was given, for its later
    /// fragments: `actions` less the L4 rewrites (they have no L4 header).
    pub fn record(&mut self, id: DatagramId, actions: &Actions, now: Instant) -> Recorded {
        if self.by_datagram.len() >= MAX_ENTRIES && !self.by_datagram.contains_key(&id) {
            if self.none_expire_before.is_none_or(|t| t <= now) {
                self.sweep(now);
            }
            if self.by_datagram.len() >= MAX_ENTRIES {
                return Recorded::Full;
            }
        }
        let mut kept = Actions::new();
        for a in actions.iter().filter(|a| {
            !matches!(a, Action::SetL4Src(_) | Action::SetL4Dst(_) | Action::SetIcmpId(_))
        }) {
            kept.push(*a);
        }
        self.by_datagram.insert(id, (kept, now + LIFETIME));
        Recorded::Kept
    }

    /// The actions for a later fragment of `id`, if its first was kept and
    /// has not expired.
    pub fn follow(&self, id: &DatagramId, now: Instant) -> Option<Actions> {
        self.by_datagram.get(id).filter(|(_, until)| *until > now).map(|(a, _)| a.clone())
    }

    /// Drops what expired; returns how many are left.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.sweep(now);
        self.by_datagram.len()
    }

    fn sweep(&mut self, now: Instant) {
        let mut soonest: Option<Instant> = None;
        self.by_datagram.retain(|_, (_, until)| {
            let live = *until > now;
            if live {
                soonest = Some(soonest.map_or(*until, |s| s.min(*until)));
            }
            live
        });
        self.none_expire_before = soonest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(vlan: bool, ip_id: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
        ip[6] = 0x20; // more fragments
        ip[9] = 17;
        f.extend_from_slice(&ip);
        f
    }

    fn key(frag: FragType) -> FlowKey {
        FlowKey {
            ethertype: 0x0800,
            ipv4_src: Ipv4Addr::new(10, 0, 0, 1),
            ipv4_dst: Ipv4Addr::new(192, 0, 2, 1),
            ip_proto: 17,
            ip_frag: frag,
            ..FlowKey::default()
        }
    }

    #[test]
    fn a_datagram_is_known_by_its_ip_id_behind_any_vlan_tags() {
        let p = PortId::random();
        let id = DatagramId::of(p, &key(FragType::First), &frame(false, 0xbeef)).expect("first");
        assert_eq!(id.ip_id, 0xbeef);
        let tagged = DatagramId::of(p, &key(FragType::Later), &frame(true, 0xbeef)).expect("later");
        assert_eq!(tagged, id, "the same datagram, tagged or not");
        assert!(DatagramId::of(p, &key(FragType::No), &frame(false, 1)).is_none(), "whole");
        assert!(DatagramId::of(p, &key(FragType::Later), &frame(false, 1)[..20]).is_none());
    }

    #[test]
    fn later_fragments_get_the_first_ones_actions_less_the_l4_rewrites() {
        let p = PortId::random();
        let id = DatagramId::of(p, &key(FragType::First), &frame(false, 7)).expect("id");
        let mut a = Actions::new();
        for x in [
            Action::SetIpv4Src(Ipv4Addr::new(192, 0, 2, 9)),
            Action::SetL4Src(40000),
            Action::SetTtl(63),
            Action::Tunnel { dst: Ipv4Addr::new(10, 9, 0, 2), key: 5 },
        ] {
            a.push(x);
        }
        let now = Instant::now();
        let mut t = Fragments::default();
        assert_eq!(t.record(id, &a, now), Recorded::Kept);
        let got = t.follow(&id, now).expect("kept");
        assert_eq!(
            got.as_slice(),
            &[
                Action::SetIpv4Src(Ipv4Addr::new(192, 0, 2, 9)),
                Action::SetTtl(63),
                Action::Tunnel { dst: Ipv4Addr::new(10, 9, 0, 2), key: 5 },
            ]
        );
        assert!(t.follow(&DatagramId { ip_id: 8, ..id }, now).is_none(), "another datagram");
        assert!(t.follow(&id, now + LIFETIME).is_none(), "expired");
        assert_eq!(t.expire(now + LIFETIME), 0);
    }

    #[test]
    fn a_full_table_drops_the_expired_then_refuses() {
        let p = PortId::random();
        let base = DatagramId::of(p, &key(FragType::First), &frame(false, 0)).expect("id");
        let now = Instant::now();
        let mut t = Fragments::default();
        for i in 0..MAX_ENTRIES {
            let id = DatagramId { ip_id: i as u16, src: Ipv4Addr::from(i as u32), ..base };
            assert_eq!(t.record(id, &Actions::new(), now), Recorded::Kept);
        }
        let one_more = DatagramId { ip_id: 1, src: Ipv4Addr::new(1, 1, 1, 1), ..base };
        assert_eq!(t.record(one_more, &Actions::new(), now), Recorded::Full);
        let almost = now + LIFETIME - Duration::from_millis(1);
        assert_eq!(t.record(one_more, &Actions::new(), almost), Recorded::Full, "all still live");
        assert_eq!(t.record(one_more, &Actions::new(), now + LIFETIME), Recorded::Kept);
        assert_eq!(t.expire(now + LIFETIME), 1);
    }
}
