//! Kernel interfaces: AF_PACKET vport sockets with virtio-net headers, the
//! VXLAN UDP socket, batched `recvmmsg`/`sendmmsg`, epoll + eventfd, and
//! entering a network namespace on a dedicated thread.
//!
//! This is the only module with `unsafe`: every block is a libc call on a
//! file descriptor this module owns, or on buffers whose lifetime covers
//! the call (and one, [`trim_heap`], on the allocator's own state).
//!
//! Why not the TPACKET_V3 ring that won the RX throughput test in
//! our measurements of the ring variants: a V3 block is handed to user space only when it is full or
//! when its retire timer fires (granularity 1 ms), so a lone ping waits up to
//! a millisecond per hop: far beyond our 0.25 ms RTT target. V3 with a
//! "peek at the open block" trick is racy. `recvmmsg` wakes per packet and is
//! batched under load, and it carries the 64 KB GSO frames we need with
//! `PACKET_VNET_HDR` without sizing ring frames for the worst case. (Checked
//! on 6.18: the kernel accepts `PACKET_VNET_HDR` together with a V2 or V3
//! `PACKET_RX_RING`, so a TPACKET_V2 ring — per-packet wake-ups, no copy —
//! is the natural next step; its frames would have to hold 64 KB.) The
//! whole datapath keeps buffers fixed and preallocated, so a ring can
//! replace [`PacketSocket::recv_batch`] without touching the pipeline.
//!
//! The tunnel socket sends runs of equal-size datagrams to one host as a
//! single `UDP_SEGMENT` (GSO) message and receives with `UDP_GRO`, so a
//! burst of small packets crosses the underlay stack once
//! ([`TunnelTxQueue`], [`RxBatch`] slots with `seg`).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const SOL_PACKET: libc::c_int = 263;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const ETH_P_ALL: u16 = 0x0003;

/// Size of `struct virtio_net_hdr` (the one `PACKET_VNET_HDR` uses).
pub const VNET_HDR_LEN: usize = 10;

/// `struct virtio_net_hdr`, host byte order (AF_PACKET uses the host's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub const F_NEEDS_CSUM: u8 = 1;
    pub const F_DATA_VALID: u8 = 2;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    pub const GSO_UDP: u8 = 3;
    pub const GSO_TCPV6: u8 = 4;
    pub const GSO_UDP_L4: u8 = 5;
    pub const GSO_ECN: u8 = 0x80;

    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> Self {
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        }
    }

    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Whether the frame still needs offload work (segmentation or checksum).
    pub fn is_offloaded(&self) -> bool {
        self.gso_type != Self::GSO_NONE || self.flags & Self::F_NEEDS_CSUM != 0
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: fd is a socket we own; the option value is a c_int living on
    // the stack for the duration of the call, and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Interface index of `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// One slot of a batch: a fixed buffer with headroom in front of the frame
/// so encapsulation headers can be stripped and VLAN tags pushed in place.
pub struct Slot {
    pub buf: Box<[u8]>,
    /// Offset of the frame's first byte in `buf`.
    pub start: usize,
    /// Frame length in bytes.
    pub len: usize,
    pub vnet: VnetHdr,
    /// Lowest offset a rewrite may grow the frame into (VLAN push). Bytes
    /// below it may belong to a previous frame of the same buffer that is
    /// already queued for output (UDP GRO batches).
    pub floor: usize,
    /// For a UDP GRO message: the size of each datagram in it; 0 = one datagram.
    pub seg: usize,
    /// The sender's IPv4 address, for a message of the tunnel socket (a GRO
    /// message's datagrams all have one); unspecified otherwise.
    pub src: Ipv4Addr,
}

/// Room in front of every frame: a VXLAN header (8) or virtio-net header
/// (10) is received there, and VLAN pushes (4 each) grow into it.
pub const HEADROOM: usize = 64;
/// Largest frame we carry: a 64 KB GSO frame plus L2 headers.
pub const MAX_FRAME: usize = 65_536 + 64;

impl Slot {
    fn new() -> Self {
        Slot {
            buf: vec![0u8; HEADROOM + MAX_FRAME].into_boxed_slice(),
            start: HEADROOM,
            len: 0,
            vnet: VnetHdr::default(),
            floor: 0,
            seg: 0,
            src: Ipv4Addr::UNSPECIFIED,
        }
    }

    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// A fixed-size batch of receive slots, reused for every call.
pub struct RxBatch {
    pub slots: Vec<Slot>,
    /// How many slots the last receive filled.
    pub count: usize,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    /// Ancillary data (UDP GRO segment size), one buffer per slot.
    cmsgs: Vec<[u64; 8]>,
    want_cmsg: bool,
    /// Senders' addresses, one per slot (the tunnel socket only).
    names: Vec<libc::sockaddr_in>,
    want_src: bool,
    /// Latest `SO_RXQ_OVFL` value seen (the socket's cumulative drop count).
    pub rxq_ovfl: u32,
}

// SAFETY: the raw pointers inside `hdrs`/`iovs` are scratch space rebuilt
// before every syscall from `slots` and `names`, which the batch owns; nothing aliases
// them across threads.
unsafe impl Send for RxBatch {}

impl RxBatch {
    pub fn new(n: usize) -> Self {
        RxBatch {
            slots: (0..n).map(|_| Slot::new()).collect(),
            count: 0,
            // SAFETY: mmsghdr/iovec are plain C structs for which all-zero is valid.
            hdrs: vec![unsafe { std::mem::zeroed() }; n],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; n],
            cmsgs: vec![[0u64; 8]; n],
            want_cmsg: false,
            // SAFETY: sockaddr_in is a plain C struct for which all-zero is valid.
            names: vec![unsafe { std::mem::zeroed() }; n],
            want_src: false,
            rxq_ovfl: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// `recvmmsg` (non-blocking) into the slots, each received at
    /// `HEADROOM - lead`. Returns the number of messages; their lengths are
    /// in `slots[i].len` (including the `lead` bytes, callers fix up).
    fn recv_into(&mut self, fd: RawFd, lead: usize) -> io::Result<usize> {
        let n = self.slots.len();
        for i in 0..n {
            let s = &mut self.slots[i];
            let off = HEADROOM - lead;
            self.iovs[i] = libc::iovec {
                iov_base: s.buf[off..].as_mut_ptr().cast(),
                iov_len: s.buf.len() - off,
            };
            // SAFETY: all-zero is a valid mmsghdr.
            self.hdrs[i] = unsafe { std::mem::zeroed() };
            self.hdrs[i].msg_hdr.msg_iov = &mut self.iovs[i];
            self.hdrs[i].msg_hdr.msg_iovlen = 1;
            if self.want_cmsg {
                self.hdrs[i].msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
                self.hdrs[i].msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
            }
            if self.want_src {
                self.hdrs[i].msg_hdr.msg_name =
                    (&mut self.names[i] as *mut libc::sockaddr_in).cast();
                self.hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
        }
        // SAFETY: hdrs[i] points at iovs[i], which points into slots[i].buf,
        // and (tunnel socket) at names[i]; all outlive the call and are not
        // touched concurrently.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.count = 0;
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(e) };
        }
        let r = r as usize;
        for i in 0..r {
            self.slots[i].start = HEADROOM - lead;
            self.slots[i].len = self.hdrs[i].msg_len as usize;
            self.slots[i].floor = 0;
            self.slots[i].seg = 0;
            self.slots[i].src = Ipv4Addr::UNSPECIFIED;
            // An AF_INET socket names an IPv4 sender; anything else (no
            // name) stays unspecified, which is never a tunnel peer.
            if self.want_src
                && self.hdrs[i].msg_hdr.msg_namelen as usize
                    >= std::mem::size_of::<libc::sockaddr_in>()
                && self.names[i].sin_family == libc::AF_INET as libc::sa_family_t
            {
                self.slots[i].src = Ipv4Addr::from(u32::from_be(self.names[i].sin_addr.s_addr));
            }
            if self.want_cmsg {
                let (seg, ovfl) = parse_cmsgs(&self.hdrs[i].msg_hdr);
                self.slots[i].seg = seg;
                if let Some(o) = ovfl {
                    self.rxq_ovfl = o;
                }
            }
            // A datagram larger than the buffer is cut; flag it so the
            // pipeline counts it as truncated instead of forwarding garbage.
            if self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.slots[i].len = 0;
            }
        }
        self.count = r;
        Ok(r)
    }
}

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// From a received message's ancillary data: the UDP GRO segment size (0
/// if none) and the socket's cumulative drop counter (`SO_RXQ_OVFL`).
fn parse_cmsgs(m: &libc::msghdr) -> (usize, Option<u32>) {
    let (mut seg, mut ovfl) = (0, None);
    if m.msg_control.is_null() || m.msg_controllen == 0 {
        return (seg, ovfl);
    }
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR /
    // CMSG_NXTHDR stay inside that buffer; CMSG_DATA of UDP_GRO holds a
    // c_int and of SO_RXQ_OVFL a u32 (both read unaligned to be safe).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                seg = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int).max(0)
                    as usize;
            } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                ovfl = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const u32));
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    (seg, ovfl)
}

/// One queued transmission: up to three pieces sent as one message.
#[derive(Clone, Copy)]
pub struct TxItem {
    pub head: [u8; 16],
    pub head_len: u8,
    pub ptr: *const u8,
    pub len: usize,
    /// Destination for the tunnel socket (ignored on packet sockets).
    pub dst: Option<SocketAddrV4>,
}

/// A fixed-capacity transmit queue flushed with one `sendmmsg`.
///
/// The items point into receive slots (or the pipeline's scratch buffers);
/// the owner guarantees those stay untouched until [`TxQueue::flush`].
pub struct TxQueue {
    items: Vec<TxItem>,
    cap: usize,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<[libc::iovec; 2]>,
    addrs: Vec<libc::sockaddr_in>,
}

// SAFETY: see RxBatch; the pointers are only dereferenced by the kernel
// during flush, on the thread that owns the queue.
unsafe impl Send for TxQueue {}

impl TxQueue {
    pub fn new(cap: usize) -> Self {
        TxQueue {
            items: Vec::with_capacity(cap),
            cap,
            // SAFETY: all-zero is valid for these C structs.
            hdrs: vec![unsafe { std::mem::zeroed() }; cap],
            iovs: vec![[libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2]; cap],
            // SAFETY: as above.
            addrs: vec![unsafe { std::mem::zeroed() }; cap],
        }
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.cap
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Queue a message; the caller flushes first when [`Self::is_full`].
    pub fn push(&mut self, item: TxItem) {
        debug_assert!(!self.is_full());
        self.items.push(item);
    }

    /// Send everything queued. Returns (messages sent, bytes sent, messages
    /// that failed). The queue is empty afterwards whatever happened.
    pub fn flush(&mut self, fd: RawFd) -> (usize, u64, usize) {
        let n = self.items.len();
        if n == 0 {
            return (0, 0, 0);
        }
        for i in 0..n {
            let it = &self.items[i];
            self.iovs[i][0] =
                libc::iovec { iov_base: it.head.as_ptr() as *mut _, iov_len: it.head_len as usize };
            self.iovs[i][1] = libc::iovec { iov_base: it.ptr as *mut _, iov_len: it.len };
            // SAFETY: all-zero is a valid mmsghdr.
            self.hdrs[i] = unsafe { std::mem::zeroed() };
            self.hdrs[i].msg_hdr.msg_iov = self.iovs[i].as_mut_ptr();
            self.hdrs[i].msg_hdr.msg_iovlen = 2;
            if let Some(dst) = it.dst {
                self.addrs[i] = sockaddr_in(dst);
                self.hdrs[i].msg_hdr.msg_name =
                    (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
                self.hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
        }
        let (mut sent, mut bytes, mut failed) = (0usize, 0u64, 0usize);
        let mut off = 0;
        let mut retries = 0;
        while off < n {
            // SAFETY: hdrs[off..n] point at iovs/addrs of this queue and at
            // the items' buffers, which the owner keeps alive until flush
            // returns.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[off..].as_mut_ptr(),
                    (n - off) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                for h in &self.hdrs[off..off + r as usize] {
                    bytes += h.msg_len as u64;
                }
                sent += r as usize;
                off += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            // A full socket buffer: retry briefly, then drop. Any other
            // error belongs to the first message: skip it and go on.
            if r < 0 && e.kind() == io::ErrorKind::WouldBlock && retries < 64 {
                retries += 1;
                std::thread::yield_now();
                continue;
            }
            failed += 1;
            off += 1;
        }
        self.items.clear();
        (sent, bytes, failed)
    }
}

/// Transmit queue of the tunnel socket. Consecutive datagrams to the same
/// destination with the same size are sent as one UDP GSO message
/// (`UDP_SEGMENT`): one trip through the IP stack and the underlay for up to
/// [`GSO_MAX_SEGS`] small packets, and with `UDP_GRO` on the receiving
/// socket one wake-up and one message there too.
pub struct TunnelTxQueue {
    items: Vec<TunnelItem>,
    cap: usize,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
    cmsgs: Vec<[u64; 4]>,
    /// Items per message of the last flush.
    counts: Vec<usize>,
    /// Largest datagram size still sent with GSO (lowered when the kernel
    /// refuses a size).
    gso_limit: usize,
}

/// One tunnel datagram: VXLAN header + frame (pointer into a slot).
#[derive(Clone, Copy)]
pub struct TunnelItem {
    pub hdr: [u8; 8],
    pub ptr: *const u8,
    pub len: usize,
    pub dst: SocketAddrV4,
}

/// Most datagrams in one GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64
/// on older kernels).
pub const GSO_MAX_SEGS: usize = 64;
/// Most payload bytes in one GSO message (fits the 16-bit IP length).
const GSO_MAX_BYTES: usize = 65_000;

// SAFETY: like TxQueue: the pointers are dereferenced only by the kernel
// during flush, on the owning thread, while the owner keeps them alive.
unsafe impl Send for TunnelTxQueue {}

impl TunnelTxQueue {
    pub fn new(cap: usize) -> Self {
        TunnelTxQueue {
            items: Vec::with_capacity(cap),
            cap,
            // SAFETY: all-zero is valid for these C structs.
            hdrs: vec![unsafe { std::mem::zeroed() }; cap],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2 * cap],
            // SAFETY: as above.
            addrs: vec![unsafe { std::mem::zeroed() }; cap],
            cmsgs: vec![[0u64; 4]; cap],
            counts: vec![0; cap],
            gso_limit: GSO_MAX_BYTES,
        }
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.cap
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, item: TunnelItem) {
        debug_assert!(!self.is_full());
        self.items.push(item);
    }

    /// Send everything queued: (datagrams sent, bytes sent, datagrams failed).
    pub fn flush(&mut self, fd: RawFd) -> (usize, u64, usize) {
        let n = self.items.len();
        if n == 0 {
            return (0, 0, 0);
        }
        // Build messages: runs of equal size and destination.
        let mut m = 0;
        let mut i = 0;
        while i < n {
            let first = self.items[i];
            let size = 8 + first.len;
            let mut j = i + 1;
            while j < n
                && size <= self.gso_limit
                && j - i < GSO_MAX_SEGS
                && self.items[j].dst == first.dst
                && 8 + self.items[j].len == size
                && (j - i + 1) * size <= GSO_MAX_BYTES
            {
                j += 1;
            }
            for (k, it) in self.items[i..j].iter().enumerate() {
                self.iovs[2 * (i + k)] =
                    libc::iovec { iov_base: it.hdr.as_ptr() as *mut _, iov_len: 8 };
                self.iovs[2 * (i + k) + 1] =
                    libc::iovec { iov_base: it.ptr as *mut _, iov_len: it.len };
            }
            // SAFETY: all-zero is a valid mmsghdr.
            self.hdrs[m] = unsafe { std::mem::zeroed() };
            let h = &mut self.hdrs[m].msg_hdr;
            h.msg_iov = self.iovs[2 * i..].as_mut_ptr();
            h.msg_iovlen = 2 * (j - i);
            self.addrs[m] = sockaddr_in(first.dst);
            h.msg_name = (&mut self.addrs[m] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            if j - i > 1 {
                let buf = &mut self.cmsgs[m];
                *buf = [0; 4];
                h.msg_control = buf.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure size computation.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
                // SAFETY: msg_control points at a zeroed buffer of at least
                // CMSG_SPACE(2) bytes (32 bytes); CMSG_FIRSTHDR/CMSG_DATA stay inside it.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size as u16);
                }
            }
            self.counts[m] = j - i;
            m += 1;
            i = j;
        }
        let (mut sent, mut bytes, mut failed) = (0usize, 0u64, 0usize);
        let mut off = 0;
        let mut retries = 0;
        while off < m {
            // SAFETY: hdrs[off..m] point at this queue's iovs/addrs/cmsgs and
            // at the items' buffers, alive until flush returns.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[off..].as_mut_ptr(),
                    (m - off) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                for k in off..off + r as usize {
                    bytes += u64::from(self.hdrs[k].msg_len);
                    sent += self.counts[k];
                }
                off += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if r < 0 && e.kind() == io::ErrorKind::WouldBlock && retries < 64 {
                retries += 1;
                std::thread::yield_now();
                continue;
            }
            if r < 0
                && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EMSGSIZE))
                && self.counts[off] > 1
            {
                // The kernel refuses GSO for this size (segment larger than
                // the path MTU, or no GSO on the route): never group this
                // size again, and send these datagrams one by one.
                // SAFETY: msg_iov points at this message's iovecs (2 per
                // datagram, so at least two).
                let size = unsafe { (*self.hdrs[off].msg_hdr.msg_iov.add(1)).iov_len } + 8;
                self.gso_limit = self.gso_limit.min(size.saturating_sub(1));
                let (s1, b1, f1) = self.send_singly(fd, off);
                sent += s1;
                bytes += b1;
                failed += f1;
                off += 1;
                continue;
            }
            failed += self.counts[off];
            off += 1;
        }
        self.items.clear();
        (sent, bytes, failed)
    }

    /// Send the datagrams of message `m` one `sendmsg` each.
    fn send_singly(&mut self, fd: RawFd, m: usize) -> (usize, u64, usize) {
        let (mut sent, mut bytes, mut failed) = (0, 0u64, 0);
        let base = self.hdrs[m].msg_hdr;
        for k in 0..self.counts[m] {
            let mut h = base;
            // SAFETY: base.msg_iov points at 2 * counts[m] iovecs of this queue.
            h.msg_iov = unsafe { base.msg_iov.add(2 * k) };
            h.msg_iovlen = 2;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            // SAFETY: h points at live iovecs, address and item buffers.
            let r = unsafe { libc::sendmsg(fd, &h, libc::MSG_DONTWAIT) };
            if r >= 0 {
                sent += 1;
                bytes += r as u64;
            } else {
                failed += 1;
            }
        }
        (sent, bytes, failed)
    }
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
        sin_zero: [0; 8],
    }
}

/// An AF_PACKET socket bound to one interface, with virtio-net headers on
/// both directions and qdisc bypass for transmit.
pub struct PacketSocket {
    fd: OwnedFd,
    pub ifindex: u32,
}

impl PacketSocket {
    pub fn open(ifname: &str) -> io::Result<Self> {
        let ifindex = if_index(ifname)?;
        // SAFETY: plain socket(2) call; the result is checked and owned.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt_int(raw, SOL_PACKET, PACKET_VNET_HDR, 1)?;
        setsockopt_int(raw, SOL_PACKET, PACKET_QDISC_BYPASS, 1)?;
        // Our own transmissions bypass taps, but anything the host stack
        // sends on this link must not loop back into the datapath.
        setsockopt_int(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
        let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20);
        let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 8 << 20);
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll whose size is passed.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        Ok(PacketSocket { fd, ifindex })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Packets the kernel dropped on this socket since the last call
    /// (`PACKET_STATISTICS` resets on read).
    pub fn take_kernel_drops(&self) -> u32 {
        const PACKET_STATISTICS: libc::c_int = 6;
        let mut st = [0u32; 2]; // struct tpacket_stats { tp_packets, tp_drops }
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: st is a writable buffer of `len` bytes for the duration of the call.
        let r = unsafe {
            libc::getsockopt(
                self.fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            st[1]
        } else {
            0
        }
    }

    /// Receive a batch; each slot gets its virtio-net header parsed and its
    /// frame at `HEADROOM`. Slots shorter than the header get `len == 0`.
    pub fn recv_batch(&self, b: &mut RxBatch) -> io::Result<usize> {
        let n = b.recv_into(self.fd(), VNET_HDR_LEN)?;
        for s in &mut b.slots[..n] {
            if s.len < VNET_HDR_LEN {
                s.len = 0;
                continue;
            }
            let mut h = [0u8; VNET_HDR_LEN];
            h.copy_from_slice(&s.buf[s.start..s.start + VNET_HDR_LEN]);
            s.vnet = VnetHdr::parse(&h);
            s.start += VNET_HDR_LEN;
            s.len -= VNET_HDR_LEN;
        }
        Ok(n)
    }
}

/// The VXLAN UDP socket: bound to the underlay address, outer UDP checksum
/// zero (RFC 7348 §5 allows it; it saves a pass over 64 KB frames).
pub struct TunnelSocket {
    fd: OwnedFd,
    pub local: SocketAddrV4,
}

impl TunnelSocket {
    pub fn bind(local: SocketAddrV4) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; result checked and owned.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        // No SO_NO_CHECK: zero outer checksums forbid UDP GSO (the kernel
        // rejects the send), and with GSO the checksum is left to offload
        // (CHECKSUM_PARTIAL; free on veth, done by the NIC otherwise).
        // Receive runs of datagrams as one GRO message when the kernel can.
        let _ = setsockopt_int(raw, SOL_UDP, UDP_GRO, 1);
        // Report the socket's drop counter with every message, so receive
        // overruns are counted like every other drop.
        let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1);
        // Let the kernel fragment when an inner frame exceeds the underlay MTU.
        setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DONT)?;
        let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20);
        let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 16 << 20);
        let sa = sockaddr_in(local);
        // SAFETY: sa is a valid sockaddr_in whose size is passed.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        })?;
        Ok(TunnelSocket { fd, local })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Receive datagrams so that the VXLAN header lands just in front of
    /// `HEADROOM`: after stripping it the inner frame starts at `HEADROOM`.
    /// `slots[i].start/len` cover the whole datagram (header included);
    /// `slots[i].src` is the sender's address (checked against the tunnel
    /// peers before anything else).
    pub fn recv_batch(&self, b: &mut RxBatch, vxlan_len: usize) -> io::Result<usize> {
        b.want_cmsg = true;
        b.want_src = true;
        b.recv_into(self.fd(), vxlan_len)
    }
}

/// epoll set plus an eventfd used to wake the loop for control messages.
pub struct Poller {
    ep: OwnedFd,
    ev: OwnedFd,
    events: Vec<libc::epoll_event>,
}

/// Token of the wake-up eventfd in [`Poller::wait`] results.
pub const WAKE_TOKEN: u64 = u64::MAX;

impl Poller {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscalls; results checked and owned.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: ep is fresh and owned here.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        // SAFETY: plain syscall; result checked.
        let ev = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: ev is fresh and owned here.
        let ev = unsafe { OwnedFd::from_raw_fd(ev) };
        let p = Poller { ep, ev, events: vec![libc::epoll_event { events: 0, u64: 0 }; 64] };
        p.add(p.ev.as_raw_fd(), WAKE_TOKEN)?;
        Ok(p)
    }

    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut e = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: both descriptors are valid; e lives across the call.
        cvt(unsafe { libc::epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut e) })
            .map(drop)
    }

    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: valid descriptors; a null event is allowed for DEL.
        cvt(unsafe {
            libc::epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut())
        })
        .map(drop)
    }

    /// A handle other threads use to wake [`Poller::wait`].
    pub fn waker(&self) -> io::Result<Waker> {
        Ok(Waker { fd: self.ev.try_clone()? })
    }

    /// Drain the eventfd counter after a wake-up.
    pub fn clear_wake(&self) {
        let mut v = 0u64;
        // SAFETY: reading 8 bytes from an eventfd into a u64 on the stack.
        let _ = unsafe { libc::read(self.ev.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    /// Wait up to `timeout_ms` and return the ready tokens.
    pub fn wait(&mut self, timeout_ms: i32, out: &mut Vec<u64>) -> io::Result<()> {
        out.clear();
        // SAFETY: events has room for events.len() entries.
        let r = unsafe {
            libc::epoll_wait(
                self.ep.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        out.extend(self.events[..r as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

/// Wakes a [`Poller`] from another thread.
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn wake(&self) {
        let v = 1u64;
        // SAFETY: writing 8 bytes from a u64 on the stack to an eventfd.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
    }
}

/// Spawn a named OS thread that first enters network namespace
/// `/run/netns/<netns>` (if given) and then runs `f`. `setns` changes only
/// the calling thread, which is why it must be a thread of its own.
pub fn spawn_in_netns<F, T>(
    name: String,
    netns: Option<String>,
    f: F,
) -> io::Result<std::thread::JoinHandle<io::Result<T>>>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name).spawn(move || {
        if let Some(ns) = netns {
            enter_netns(&ns)?;
        }
        f()
    })
}

/// Put the calling thread under `SCHED_FIFO` at `priority`.
pub fn set_realtime(priority: i32) -> io::Result<()> {
    let p = libc::sched_param { sched_priority: priority };
    // SAFETY: pid 0 = the calling thread; p lives across the call.
    cvt(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) }).map(drop)
}

/// Put the calling thread under `SCHED_IDLE`: it runs only when no other
/// thread wants its CPU, and waking it never preempts the thread that woke
/// it. For background work whose waker is on a latency path (the agent's
/// flow-state receiver, woken in a peer's `sendto`), with a backstop of
/// normal priority in case it starves.
pub fn set_idle_priority() -> io::Result<()> {
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 = the calling thread; p lives across the call.
    cvt(unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &p) }).map(drop)
}

/// Hands the heap's free pages back to the kernel (glibc's `malloc_trim`);
/// whether any were. glibc keeps what a thread frees in that thread's
/// arena: an agent that received a 60 MiB snapshot on one thread and built
/// its topology on another kept the message's pages after freeing them
/// (196 against 124 MiB at 100k ports, `examples/snapshot_apply`). No-op
/// (false) on other C libraries.
pub fn trim_heap() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists; it
        // takes no pointer and frees nothing that is in use.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Move the calling thread into `/run/netns/<name>` (or an absolute path).
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = if name.starts_with('/') { name.to_owned() } else { format!("/run/netns/{name}") };
    let f = std::fs::File::open(&path)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_hdr_round_trip() {
        let h = VnetHdr {
            flags: 1,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), h);
        assert!(h.is_offloaded());
        assert!(!VnetHdr::default().is_offloaded());
    }

    #[test]
    fn udp_batch_round_trip_on_loopback() {
        let a = TunnelSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind a");
        let b = TunnelSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind b");
        let b_addr = local_addr(b.fd());
        let payload: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
        let mut q = TxQueue::new(8);
        for p in &payload {
            let mut head = [0u8; 16];
            head[..8].copy_from_slice(b"VXLANHDR");
            q.push(TxItem { head, head_len: 8, ptr: p.as_ptr(), len: p.len(), dst: Some(b_addr) });
        }
        let (sent, bytes, failed) = q.flush(a.fd());
        assert_eq!((sent, failed), (5, 0));
        assert_eq!(bytes, payload.iter().map(|p| p.len() as u64 + 8).sum::<u64>());
        let mut rx = RxBatch::new(8);
        let mut got = 0;
        for _ in 0..100 {
            got += b.recv_batch(&mut rx, 8).expect("recv");
            if got > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, 5);
        let s = &rx.slots[2];
        assert_eq!(&s.buf[s.start..s.start + 8], b"VXLANHDR");
        assert_eq!(s.start + 8, HEADROOM);
        assert_eq!(&s.buf[HEADROOM..s.start + s.len], &payload[2][..]);
        assert!(rx.slots[..5].iter().all(|s| s.src == Ipv4Addr::LOCALHOST), "sender recorded");
    }

    #[test]
    fn tunnel_gso_batches_split_back_into_datagrams() {
        let a = TunnelSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind a");
        let b = TunnelSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind b");
        let dst = local_addr(b.fd());
        // Five equal-size frames (one GSO message), then a different size.
        let frames: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; if i < 5 { 60 } else { 90 }]).collect();
        let mut q = TunnelTxQueue::new(16);
        for (i, f) in frames.iter().enumerate() {
            let hdr = [0x08, 0, 0, 0, 0, 0, i as u8, 0];
            q.push(TunnelItem { hdr, ptr: f.as_ptr(), len: f.len(), dst });
        }
        assert_eq!(q.flush(a.fd()), (6, 5 * 68 + 98, 0));
        let mut rx = RxBatch::new(8);
        let mut got: Vec<Vec<u8>> = Vec::new();
        for _ in 0..100 {
            let n = b.recv_batch(&mut rx, 8).expect("recv");
            for s in &rx.slots[..n] {
                let seg = if s.seg == 0 { s.len } else { s.seg };
                for chunk in s.frame().chunks(seg) {
                    got.push(chunk.to_vec());
                }
            }
            if got.len() >= 6 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got.len(), 6);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d[6], i as u8, "datagram order and VXLAN header");
            assert_eq!(&d[8..], &frames[i][..]);
        }
    }

    fn local_addr(fd: RawFd) -> SocketAddrV4 {
        // SAFETY: getsockname into a sockaddr_in-sized buffer.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        // SAFETY: as above.
        let r =
            unsafe { libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) };
        assert_eq!(r, 0);
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
            u16::from_be(sa.sin_port),
        )
    }

    #[test]
    fn poller_wakes() {
        let mut p = Poller::new().expect("poller");
        let w = p.waker().expect("waker");
        w.wake();
        let mut out = Vec::new();
        p.wait(1000, &mut out).expect("wait");
        assert_eq!(out, vec![WAKE_TOKEN]);
        p.clear_wake();
        p.wait(0, &mut out).expect("wait");
        assert!(out.is_empty());
    }
}
