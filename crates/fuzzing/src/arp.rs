//! `arp`: ARP frames through the key extractor, `wire`'s builders and the
//! simulation's bridge and router ARP handling.
//!
//! ```text
//!  [port (1)] [flags (1)] [ARP message (28) | trailer]
//!   flags bits 0-1: Ethernet destination = broadcast, the router's LAN MAC,
//!                   the router's uplink MAC, or the message's target MAC
//!   flag  bit 2:    add an 802.1Q tag (VLAN 7)
//!   flag  bit 3:    keep the message's first 6 bytes (otherwise they are
//!                   set to Ethernet/IPv4: htype 1, ptype 0x0800, 6, 4)
//!   flag  bit 4:    warm state (learned MACs and ARP entries)
//! ```
//!
//! What must hold:
//!
//! * extract reads op, sha, spa, tha, tpa where RFC 826 puts them, and
//!   rejects exactly the messages that are not Ethernet/IPv4 or too short;
//! * `wire::arp_reply`/`arp_request` built from those fields key back to them;
//! * the simulation answers only requests, to the asker (Ethernet and ARP
//!   target = the request's sender), with a reply that keys; what it learns
//!   is the sender's own (spa → sha).

use std::net::Ipv4Addr;

use midonet_sim::{FlowKey, GenKind, InPort, MacAddr, StateWrite};
use midonet_wire::{arp_reply, arp_request};

use crate::check::simulate;
use crate::fixture::{RTR_LAN_MAC, RTR_UP_MAC};

const ETH_IPV4_ARP: [u8; 6] = [0, 1, 0x08, 0x00, 6, 4];

pub fn arp(data: &[u8]) {
    let [port, flags, msg @ ..] = data else { return };
    let mut msg = msg.to_vec();
    if flags & 0x08 == 0 && msg.len() >= 6 {
        msg[..6].copy_from_slice(&ETH_IPV4_ARP);
    }
    let target = mac_at(&msg, 18).unwrap_or(MacAddr::BROADCAST);
    let dst = match flags & 0x03 {
        0 => MacAddr::BROADCAST,
        1 => RTR_LAN_MAC,
        2 => RTR_UP_MAC,
        _ => target,
    };
    let sender = mac_at(&msg, 8).unwrap_or(MacAddr([2, 0, 0, 0, 0, 0x77]));
    let mut frame = Vec::with_capacity(18 + msg.len());
    frame.extend_from_slice(&dst.0);
    frame.extend_from_slice(&sender.0);
    if flags & 0x04 != 0 {
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    }
    frame.extend_from_slice(&[0x08, 0x06]);
    frame.extend_from_slice(&msg);

    let key = FlowKey::extract(&frame, InPort::Port(1));
    let well_formed = msg.len() >= 28 && msg[..6] == ETH_IPV4_ARP;
    assert_eq!(key.is_ok(), well_formed, "extract accepts exactly Ethernet/IPv4 ARP: {msg:02x?}");
    let Ok(key) = key else { return };
    assert!(key.is_arp());
    assert_eq!(key.arp_op, u16::from_be_bytes([msg[6], msg[7]]), "op");
    assert_eq!(Some(key.arp_sha), mac_at(&msg, 8), "sha");
    assert_eq!(key.arp_spa, ip_at(&msg, 14), "spa");
    assert_eq!(Some(key.arp_tha), mac_at(&msg, 18), "tha");
    assert_eq!(key.arp_tpa, ip_at(&msg, 24), "tpa");
    assert_eq!(key.vlan_vid, (flags & 0x04 != 0).then_some(7), "vlan");

    builders(&key);
    simulated(*port, flags & 0x10 != 0, &frame, &key);
}

fn mac_at(b: &[u8], at: usize) -> Option<MacAddr> {
    let s = b.get(at..at + 6)?;
    let mut m = [0u8; 6];
    m.copy_from_slice(s);
    Some(MacAddr(m))
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn builders(k: &FlowKey) {
    let mut f = Vec::new();
    arp_reply(&mut f, k.arp_tha.0, k.arp_tpa, k.arp_sha.0, k.arp_spa);
    let r = FlowKey::extract(&f, InPort::Port(0)).expect("a built reply keys");
    assert_eq!((r.arp_op, r.arp_sha, r.arp_spa), (2, k.arp_tha, k.arp_tpa));
    assert_eq!((r.arp_tha, r.arp_tpa, r.eth_dst), (k.arp_sha, k.arp_spa, k.arp_sha));
    f.clear();
    arp_request(&mut f, k.arp_sha.0, k.arp_spa, k.arp_tpa);
    let q = FlowKey::extract(&f, InPort::Port(0)).expect("a built request keys");
    assert_eq!((q.arp_op, q.arp_sha, q.arp_spa, q.arp_tpa), (1, k.arp_sha, k.arp_spa, k.arp_tpa));
    assert_eq!((q.arp_tha, q.eth_dst), (MacAddr::ZERO, MacAddr::BROADCAST));
}

fn simulated(port: u8, warm: bool, frame: &[u8], req: &FlowKey) {
    let Some((_, r)) = simulate(port, warm, frame) else {
        panic!("an ARP frame that keys simulates");
    };
    for g in &r.generated {
        let k = FlowKey::extract(&g.frame, InPort::Port(0)).expect("generated frames key");
        if g.kind != GenKind::ArpReply {
            continue;
        }
        assert_eq!(req.arp_op, 1, "only requests are answered");
        assert!(k.is_arp() && k.arp_op == 2, "an ARP reply: {k}");
        assert_eq!((k.eth_dst, k.arp_tha, k.arp_tpa), (req.arp_sha, req.arp_sha, req.arp_spa));
        assert_eq!(k.arp_spa, req.arp_tpa, "answers for the address asked about");
    }
    for w in &r.state_writes {
        match *w {
            StateWrite::RouterArp { ip, mac, .. } | StateWrite::BridgeArp { ip, mac, .. } => {
                assert_eq!((ip, mac), (req.arp_spa, req.arp_sha), "learns the sender's own");
            }
            _ => {}
        }
    }
}
