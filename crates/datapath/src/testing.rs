//! Helpers for tests of this crate and of its users (the agent): a static
//! MAC-table upcall handler and a minimal frame builder. Compiled only
//! for this crate's tests and with the `test-util` feature, which users
//! enable in their dev-dependencies.
//!
//! The handler stands in for the simulation in datapath tests; it installs
//! megaflows on `(in_port, eth_dst)` exactly as an L2 bridge simulation
//! would, tagged with the destination MAC so tests can invalidate by tag.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use midonet_flow::{Action, Actions, FieldId, FlowKey, FlowMask, InPort, MacAddr};

use crate::sys::VnetHdr;
use crate::{FlowInstall, MissDecision, UpcallHandler};

/// The offload header of a guest's TSO frame: Ethernet + IPv4 + 20-byte
/// TCP, partial checksum, 1448-byte segments.
pub const TCP4_GSO: VnetHdr = VnetHdr {
    flags: VnetHdr::F_NEEDS_CSUM,
    gso_type: VnetHdr::GSO_TCPV4,
    hdr_len: 54,
    gso_size: 1448,
    csum_start: 34,
    csum_offset: 16,
};

/// Tag of the flows that depend on destination `mac`.
pub fn mac_tag(mac: MacAddr) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&mac.0);
    u64::from_be_bytes(b) | (1 << 63)
}

/// Forward by destination MAC; drop what is unknown.
#[derive(Clone, Default)]
pub struct MacTableHandler {
    pub routes: HashMap<MacAddr, Vec<Action>>,
    pub idle_timeout_ms: u64,
    /// How many times `on_miss` ran (shared with the test).
    pub calls: Arc<AtomicU64>,
}

impl MacTableHandler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Packets to `mac` get `actions`.
    pub fn route(mut self, mac: MacAddr, actions: &[Action]) -> Self {
        self.routes.insert(mac, actions.to_vec());
        self
    }
}

impl UpcallHandler for MacTableHandler {
    fn on_miss(&mut self, key: &FlowKey, _frame: &[u8], _in_port: InPort) -> MissDecision {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let Some(acts) = self.routes.get(&key.eth_dst) else {
            return MissDecision::drop();
        };
        let mut mask = FlowMask::empty();
        mask.mark(FieldId::InPort);
        mask.mark(FieldId::EthDst);
        let actions: Actions = acts.iter().copied().collect();
        MissDecision::install(FlowInstall {
            mask,
            actions,
            tags: vec![mac_tag(key.eth_dst)],
            idle_timeout_ms: self.idle_timeout_ms,
        })
    }
}

/// An Ethernet + IPv4 + UDP frame (UDP checksum 0, IPv4 checksum valid).
pub fn udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    midonet_wire::checksum::set_ipv4_header_checksum(&mut ip);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_parses_back() {
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        let f =
            udp_frame(a, b, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 1, 2, b"hi");
        let k = FlowKey::extract(&f, InPort::Port(3)).expect("parse");
        assert_eq!((k.eth_src, k.eth_dst, k.l4_src, k.l4_dst, k.ip_proto), (a, b, 1, 2, 17));
        assert_eq!(midonet_wire::checksum::checksum(&f[14..34]), 0, "a valid header sums to zero");
    }
}
