//! A server's last data segment and its FIN, when both come in one receive
//! batch of a port, leave the userspace datapath as one segment.
//!
//! Why: a server that answers and closes (HTTP `Connection: close`) sends
//! its response and, microseconds later, its FIN. The kernel's own path
//! forwards each inside the sender's system call, so a client receives the
//! two back to back. The userspace datapath forwards in batches on two
//! threads (this host's and the client's host's); when the pair falls into
//! different batches the client can read the response, close first, and
//! keep the connection's 4-tuple in TIME_WAIT for 60 s. A client that does
//! so for every tenth connection runs out of ephemeral ports within half a
//! minute (docs/PERFORMANCE.md, issue 13). One segment cannot be split.
//!
//! What TCP allows: a FIN may ride on a data segment; the merged segment is
//! the one the sender would have sent had it closed before transmitting
//! (RFC 9293 §3.10.4: a FIN is queued behind the data and takes the
//! sequence number after it). The merged segment keeps the data segment's
//! sequence number, IP header and payload, takes the FIN's acknowledgment,
//! window and options (its timestamps are the newer), and has the flags of
//! both, so the receiver sees nothing older than it would have seen. Only
//! timestamps and SACK blocks may be among the options: a signature
//! (TCP-MD5, TCP-AO) or an option unknown here could cover the payload. Only a pure
//! FIN (no payload, no SYN, RST or URG) that directly follows the payload of
//! the nearest earlier segment of its connection in the batch is taken, and
//! only when both headers have the same lengths and neither is a fragment;
//! anything else is left alone. A data segment may be a TCP segmentation
//! offload frame with its checksum left to complete: whoever segments it
//! (the receiving kernel, [`crate::offload`], a kernel VTEP) puts the FIN
//! on its last segment only, as a sender's own stack does.

use hashbrown::HashMap;
use midonet_wire::checksum::{fold, sum, update16};
use midonet_wire::{Ipv4Packet, TcpPacket};

use crate::sys::{Slot, VnetHdr};

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;

/// The parts of an untagged IPv4 TCP frame the merge reads.
#[derive(Clone, Copy)]
struct Seg {
    /// Offset of the TCP header in the frame.
    l4: usize,
    /// TCP header length.
    doff: usize,
    ihl: usize,
    payload: usize,
    seq: u32,
    flags: u8,
    /// Source and destination addresses and ports.
    tuple: [u8; 12],
}

impl Seg {
    /// Whether its options are only ones a merge keeps true: timestamps
    /// and SACK blocks (and padding). A signature (TCP-MD5, TCP-AO) covers
    /// the payload, and an option we do not know may too.
    fn plain_options(&self, frame: &[u8]) -> bool {
        plain_options(&frame[self.l4 + 20..self.l4 + self.doff])
    }
}

/// Whether `opts` holds only padding, timestamps and SACK blocks, well formed.
fn plain_options(mut opts: &[u8]) -> bool {
    const EOL: u8 = 0;
    const NOP: u8 = 1;
    const SACK: u8 = 5;
    const TIMESTAMPS: u8 = 8;
    while let [kind, rest @ ..] = opts {
        match *kind {
            EOL => return true,
            NOP => opts = rest,
            SACK | TIMESTAMPS => {
                let Some(&len) = rest.first() else { return false };
                let len = usize::from(len);
                if len < 2 || len > opts.len() {
                    return false;
                }
                opts = &opts[len..];
            }
            _ => return false,
        }
    }
    true
}

fn parse(f: &[u8]) -> Option<Seg> {
    if f.len() < ETH_LEN || f[12..14] != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&f[ETH_LEN..]).ok()?;
    // Protocol TCP, not a fragment (MF clear, offset 0).
    if ip.protocol() != 6 || ip.flags_and_offset() & 0x3fff != 0 {
        return None;
    }
    let seg = ip.payload();
    let tcp = TcpPacket::new_checked(seg).ok()?;
    let doff = tcp.header_len();
    let mut tuple = [0u8; 12];
    tuple[..8].copy_from_slice(&ip.header()[12..20]);
    tuple[8..].copy_from_slice(&seg[..4]);
    Some(Seg {
        l4: ETH_LEN + ip.header_len(),
        doff,
        ihl: ip.header_len(),
        payload: seg.len() - doff,
        seq: tcp.seq_number(),
        flags: tcp.flags() as u8,
        tuple,
    })
}

fn pure_fin(s: &Seg) -> bool {
    s.payload == 0 && s.flags & (FIN | ACK) == (FIN | ACK) && s.flags & (SYN | RST | URG) == 0
}

fn plain_data(s: &Seg) -> bool {
    s.payload > 0 && s.flags & ACK == ACK && s.flags & (FIN | SYN | RST | URG) == 0
}

/// A data segment may take a FIN when it is one segment, or a TCP
/// segmentation offload frame whose checksum is left to complete.
fn offload_ok(v: &VnetHdr) -> bool {
    match v.gso_type & !VnetHdr::GSO_ECN {
        VnetHdr::GSO_NONE => true,
        VnetHdr::GSO_TCPV4 => v.flags & VnetHdr::F_NEEDS_CSUM != 0,
        _ => false,
    }
}

/// The merge's working state for a port's receive batches, reused from
/// batch to batch: each frame is parsed once, and a FIN finds the nearest
/// earlier segment of its connection through a map, so a batch costs time
/// linear in its frames whatever they hold.
#[derive(Default)]
pub struct FinMerger {
    segs: Vec<Option<Seg>>,
    absorbed: Vec<bool>,
    /// Per connection: the latest slot of the batch it has, not absorbed.
    last: HashMap<[u8; 12], usize>,
}

impl FinMerger {
    /// Merges pure FINs into the data segment before them, within `slots`
    /// (one receive batch of one port, in arrival order). Returns how many
    /// were merged; [`FinMerger::absorbed`] then names their slots, which
    /// the caller skips.
    pub fn merge(&mut self, slots: &mut [Slot]) -> usize {
        self.segs.clear();
        self.segs.extend(slots.iter().map(|s| parse(s.frame())));
        self.absorbed.clear();
        self.absorbed.resize(slots.len(), false);
        if !self.segs.iter().skip(1).flatten().any(pure_fin) {
            return 0;
        }
        self.last.clear();
        let mut merged = 0;
        for j in 0..slots.len() {
            let Some(seg) = self.segs[j] else { continue };
            if pure_fin(&seg) {
                if let Some(&i) = self.last.get(&seg.tuple) {
                    if self.mergeable(slots, i, j) {
                        let data = self.segs[i].as_mut().expect("parsed");
                        let (head, tail) = slots.split_at_mut(j);
                        merge_into(&mut head[i], data, &tail[0], &seg);
                        // Slot i now carries the FIN: it takes no other.
                        data.flags |= seg.flags;
                        self.absorbed[j] = true;
                        merged += 1;
                        continue;
                    }
                }
            }
            self.last.insert(seg.tuple, j);
        }
        merged
    }

    /// Whether slot `i` was merged into an earlier one by the last
    /// [`FinMerger::merge`].
    pub fn absorbed(&self, i: usize) -> bool {
        self.absorbed.get(i).copied().unwrap_or(false)
    }

    /// Whether pure FIN `j` may ride on segment `i`, the nearest earlier
    /// segment of its connection.
    fn mergeable(&self, slots: &[Slot], i: usize, j: usize) -> bool {
        let (Some(data), Some(fin)) = (self.segs[i], self.segs[j]) else { return false };
        plain_data(&data)
            && data.plain_options(slots[i].frame())
            && fin.plain_options(slots[j].frame())
            && data.ihl == fin.ihl
            && data.doff == fin.doff
            && data.seq.wrapping_add(data.payload as u32) == fin.seq
            && offload_ok(&slots[i].vnet)
            && slots[i].frame()[..12] == slots[j].frame()[..12]
    }
}

/// Writes `fin`'s acknowledgment, window, urgent pointer and options over
/// `data`'s TCP header, adds its flags, and fixes the checksum.
fn merge_into(data: &mut Slot, d: &Seg, fin: &Slot, f: &Seg) {
    let partial = data.vnet.flags & VnetHdr::F_NEEDS_CSUM != 0;
    let fin_tcp = &fin.frame()[f.l4..f.l4 + f.doff];
    // The FIN's flags and the data's (PSH, ECN's CWR and ECE): neither
    // carries SYN, RST or URG, and only the FIN a FIN.
    let flags = f.flags | d.flags;
    let start = data.start + d.l4;
    let tcp = &mut data.buf[start..start + d.doff];
    let csum = u16::from_be_bytes([tcp[16], tcp[17]]);
    // What changes: acknowledgment (8..12), offset and flags (12..14),
    // window (14..16), urgent pointer and options (18..); the checksum
    // (16..18) is fixed below.
    let before = words_sum(tcp);
    tcp[8..].copy_from_slice(&fin_tcp[8..]);
    tcp[13] = flags;
    tcp[16..18].copy_from_slice(&csum.to_be_bytes());
    if partial {
        // The field holds the pseudo-header sum, which depends only on the
        // addresses and the TCP length: unchanged.
        return;
    }
    // RFC 1624: HC' = ~(~HC + ~m + m'). Updated, not recomputed, so a
    // segment that came with a bad checksum keeps a bad one.
    let c = update16(csum, before, words_sum(tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
}

/// The one's complement sum of the header words a merge may change
/// (bytes 8..16 and 18.. of the TCP header).
fn words_sum(tcp: &[u8]) -> u16 {
    fold(sum(sum(0, &tcp[8..16]), &tcp[18..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use midonet_wire::checksum::{checksum, pseudo_header_v4};

    const PSH: u8 = 0x08;
    const A: [u8; 4] = [10, 0, 1, 5];
    const B: [u8; 4] = [203, 0, 113, 1];

    #[allow(clippy::too_many_arguments)]
    fn seg(
        sport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        win: u16,
        ts: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let doff = 32; // 20 + NOP NOP timestamps
        let mut tcp = vec![0u8; doff];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&8080u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12] = ((doff / 4) as u8) << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&win.to_be_bytes());
        tcp[20..24].copy_from_slice(&[1, 1, 8, 10]);
        tcp[24..28].copy_from_slice(&ts.to_be_bytes());
        tcp.extend_from_slice(payload);
        let c = !fold(sum(pseudo_header_v4(B.into(), A.into(), 6, tcp.len() as u16), &tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 0, 0, 7, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&B);
        ip.extend_from_slice(&A);
        let total = (20 + tcp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let hc = checksum(&ip);
        ip[10..12].copy_from_slice(&hc.to_be_bytes());
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&ip);
        f.extend_from_slice(&tcp);
        f
    }

    fn tcp_valid(f: &[u8]) -> bool {
        let tcp = &f[34..];
        fold(sum(pseudo_header_v4(B.into(), A.into(), 6, tcp.len() as u16), tcp)) == 0xffff
    }

    fn run(frames: Vec<Vec<u8>>) -> (Vec<Slot>, Vec<bool>, usize) {
        let mut slots: Vec<Slot> = frames.iter().map(|f| Slot::from_frame(f)).collect();
        let mut m = FinMerger::default();
        // What an earlier, longer batch left behind is no answer for this one.
        let mut longer: Vec<Slot> =
            frames.iter().chain(&frames).map(|f| Slot::from_frame(f)).collect();
        m.merge(&mut longer);
        let n = m.merge(&mut slots);
        let absorbed = (0..slots.len()).map(|i| m.absorbed(i)).collect();
        (slots, absorbed, n)
    }

    #[test]
    fn a_response_and_its_fin_become_one_segment() {
        let body = b"HTTP/1.1 200 OK\r\n\r\nhello";
        let other = seg(4000, 77, 5, ACK, 500, 9, b"x");
        let resp = seg(5000, 1000, 200, ACK | PSH, 502, 41, body);
        let fin = seg(5000, 1000 + body.len() as u32, 201, ACK | FIN, 503, 42, b"");
        let (slots, absorbed, n) = run(vec![resp.clone(), other.clone(), fin.clone()]);
        assert_eq!(n, 1);
        assert_eq!(absorbed, vec![false, false, true]);
        let m = slots[0].frame();
        assert_eq!(m.len(), resp.len(), "same length, same IP header");
        assert_eq!(&m[..34], &resp[..34]);
        let t = &m[34..];
        assert_eq!(&t[4..8], &1000u32.to_be_bytes(), "the data's sequence number");
        assert_eq!(&t[8..12], &201u32.to_be_bytes(), "the FIN's acknowledgment");
        assert_eq!(t[13], ACK | PSH | FIN);
        assert_eq!(&t[14..16], &503u16.to_be_bytes(), "the FIN's window");
        assert_eq!(&t[24..28], &42u32.to_be_bytes(), "the FIN's timestamp");
        assert_eq!(&t[32..], body);
        assert!(tcp_valid(m), "checksum valid");
        assert_eq!(slots[1].frame(), &other[..], "another connection untouched");
    }

    #[test]
    fn a_bad_checksum_stays_bad() {
        let mut resp = seg(5000, 1000, 200, ACK | PSH, 502, 41, b"abc");
        resp[50] ^= 0x40;
        assert!(!tcp_valid(&resp));
        let fin = seg(5000, 1003, 207, ACK | FIN, 510, 45, b"");
        let (slots, _, n) = run(vec![resp, fin]);
        assert_eq!(n, 1);
        assert!(!tcp_valid(slots[0].frame()), "a merge must not launder a corrupted segment");
    }

    #[test]
    fn a_partial_checksum_keeps_its_pseudo_header_sum() {
        let resp = seg(5000, 1000, 200, ACK | PSH, 502, 41, b"abc");
        let fin = seg(5000, 1003, 200, ACK | FIN, 502, 41, b"");
        let mut slots = vec![Slot::from_frame(&resp), Slot::from_frame(&fin)];
        slots[0].vnet.flags = VnetHdr::F_NEEDS_CSUM;
        let before = [slots[0].frame()[50], slots[0].frame()[51]];
        assert_eq!(FinMerger::default().merge(&mut slots), 1);
        assert_eq!([slots[0].frame()[50], slots[0].frame()[51]], before);
        assert_eq!(slots[0].frame()[47], ACK | PSH | FIN);
    }

    #[test]
    fn anything_else_is_left_alone() {
        let resp = seg(5000, 1000, 200, ACK | PSH, 502, 41, b"abc");
        let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
            (
                "a gap in sequence",
                vec![resp.clone(), seg(5000, 1004, 200, ACK | FIN, 502, 41, b"")],
            ),
            ("a FIN with data", vec![resp.clone(), seg(5000, 1003, 200, ACK | FIN, 502, 41, b"z")]),
            (
                "a FIN with RST",
                vec![resp.clone(), seg(5000, 1003, 200, ACK | FIN | RST, 502, 41, b"")],
            ),
            (
                "another connection",
                vec![resp.clone(), seg(5001, 1003, 200, ACK | FIN, 502, 41, b"")],
            ),
            ("FIN before data", vec![seg(5000, 997, 200, ACK | FIN, 502, 41, b""), resp.clone()]),
            (
                "a pure ACK between",
                vec![
                    resp.clone(),
                    seg(5000, 1003, 200, ACK, 502, 41, b""),
                    seg(5000, 1003, 200, ACK | FIN, 502, 41, b""),
                ],
            ),
            (
                "a SYN-ACK before",
                vec![
                    seg(5000, 1000, 200, ACK | SYN, 502, 41, b"abc"),
                    seg(5000, 1003, 200, ACK | FIN, 502, 41, b""),
                ],
            ),
        ];
        for (what, frames) in cases {
            let (slots, absorbed, n) = run(frames.clone());
            assert_eq!(n, 0, "{what}");
            assert!(absorbed.iter().all(|a| !a), "{what}");
            for (s, f) in slots.iter().zip(&frames) {
                assert_eq!(s.frame(), &f[..], "{what}");
            }
        }
        // A signed segment (TCP-MD5, kind 19) or an unknown option is kept
        // apart; so is a malformed option list.
        for opt in [[19u8, 10, 0, 0], [30, 4, 0, 0], [8, 40, 0, 0]] {
            let mut signed = seg(5000, 1003, 200, ACK | FIN, 502, 41, b"");
            signed[54..58].copy_from_slice(&opt);
            let (_, _, n) = run(vec![resp.clone(), signed]);
            assert_eq!(n, 0, "option {opt:?}");
        }
        // A second copy of the FIN (a retransmission) finds the answer
        // already carrying one and stays a segment of its own.
        let fin = seg(5000, 1003, 200, ACK | FIN, 502, 41, b"");
        let (_, absorbed, n) = run(vec![resp.clone(), fin.clone(), fin]);
        assert_eq!((n, absorbed), (1, vec![false, true, false]));
        // ECN's CWR on the answer stays.
        let mut cwr = resp.clone();
        cwr[47] |= 0x80;
        let (slots, _, n) = run(vec![cwr, seg(5000, 1003, 200, ACK | FIN, 502, 41, b"")]);
        assert_eq!((n, slots[0].frame()[47]), (1, 0x80 | ACK | PSH | FIN));
        // A segmentation-offloaded answer takes its FIN only with its
        // checksum left to complete, as every such frame should have.
        let fin = seg(5000, 1003, 200, ACK | FIN, 502, 41, b"");
        for (flags, gso, merges) in [
            (0, VnetHdr::GSO_TCPV4, 0),
            (VnetHdr::F_NEEDS_CSUM, VnetHdr::GSO_TCPV4, 1),
            (VnetHdr::F_NEEDS_CSUM, VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN, 1),
            (VnetHdr::F_NEEDS_CSUM, VnetHdr::GSO_UDP_L4, 0),
        ] {
            let mut slots = vec![Slot::from_frame(&resp), Slot::from_frame(&fin)];
            slots[0].vnet.flags = flags;
            slots[0].vnet.gso_type = gso;
            assert_eq!(FinMerger::default().merge(&mut slots), merges, "{flags} {gso}");
        }
        // Truncated and non-TCP frames are skipped.
        let mut short = resp.clone();
        short.truncate(40);
        let (_, _, n) = run(vec![short, resp[..20].to_vec(), vec![0u8; 60]]);
        assert_eq!(n, 0);
    }
}
