//! The `ebpf` provider's system calls that the safe crates do not wrap:
//! the inject socket (AF_PACKET with virtio-net headers, each packet
//! carrying its action list in `SO_MARK`) and the monotonic clock the
//! kernel's flow counters are stamped with. Like `crate::sys`, every
//! `unsafe` block is one libc call on memory it owns.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::{VnetHdr, VNET_HDR_LEN};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `CLOCK_MONOTONIC` in ns: what `bpf_ktime_get_coarse_ns` counts in (at
/// a tick's resolution).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec on the stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The agent's end of the inject veth: frames written here enter the
/// kernel datapath at the peer's TC ingress, where `mdp_inject` runs the
/// action list named by the packet's mark.
pub struct InjectSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl InjectSocket {
    pub fn open(ifname: &str) -> io::Result<Self> {
        let ifindex = crate::sys::if_index(ifname)?;
        // SAFETY: plain socket(2); protocol 0 = transmit only.
        let raw =
            cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        for opt in [libc::PACKET_VNET_HDR, libc::PACKET_QDISC_BYPASS] {
            // SAFETY: an int option, its size passed.
            cvt(unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_PACKET,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            })?;
        }
        let sndbuf: libc::c_int = 8 << 20;
        // SAFETY: as above; failure only leaves the default size.
        let _ = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&sndbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        Ok(InjectSocket { fd, ifindex })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Send `frame` with offload metadata `vnet`, to run action list `mark`.
    pub fn send(&self, frame: &[u8], vnet: &VnetHdr, mark: u32) -> io::Result<()> {
        let hdr = vnet.to_bytes();
        let mut iov = [
            libc::iovec { iov_base: hdr.as_ptr() as *mut libc::c_void, iov_len: VNET_HDR_LEN },
            libc::iovec { iov_base: frame.as_ptr() as *mut libc::c_void, iov_len: frame.len() },
        ];
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_protocol = u16::from_be_bytes([
            frame.get(12).copied().unwrap_or(0),
            frame.get(13).copied().unwrap_or(0),
        ])
        .to_be();
        sll.sll_halen = 6;
        // One SOL_SOCKET/SO_MARK control message (CAP_NET_ADMIN).
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(4) } as usize;
        let mut control = [0u64; 8];
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = 2;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg has a control buffer of `space` <= 64 bytes, so the
        // first header is inside it; its data holds 4 bytes.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SO_MARK;
            (*c).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::copy_nonoverlapping(mark.to_ne_bytes().as_ptr(), libc::CMSG_DATA(c), 4);
        }
        // SAFETY: msg points at live iovecs, address and control buffers.
        let r = unsafe { libc::sendmsg(self.fd(), &msg, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The calling thread's network namespace cookie: unique for the life of
/// the system, never reused (unlike the namespace's inode number).
pub fn netns_cookie() -> io::Result<u64> {
    // SO_NETNS_COOKIE (asm-generic; Linux 5.14).
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket(2); result checked and owned.
    let raw =
        cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut v = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: v is a writable u64 whose size is passed.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// `bpf(2)` with command `cmd` on the `union bpf_attr` in `attr`; its
/// result, or the error it set.
///
/// # Safety
/// Every pointer `attr` holds must be valid for what `cmd` does with it
/// (read, or written up to the length `attr` gives), for the call.
unsafe fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live buffer of its own size; the caller vouches
    // for the pointers in it.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr))
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The interface a pinned TCX link is attached to; 0 once its device is
/// gone (deleted with its network namespace, say). Raw `bpf(2)`:
/// `BPF_OBJ_GET`, then `BPF_OBJ_GET_INFO_BY_FD` into `struct bpf_link_info`
/// (`tcx.ifindex` is the first word of the union, at offset 16).
pub fn pinned_link_ifindex(path: &std::path::Path) -> io::Result<u32> {
    use std::os::unix::ffi::OsStrExt;
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // union bpf_attr for BPF_OBJ_GET: pathname (u64), bpf_fd, file_flags.
    let mut attr = [0u64; 4];
    attr[0] = c.as_ptr() as u64;
    // SAFETY: attr holds a valid path pointer, which outlives the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut attr)? };
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let mut info = [0u64; 8];
    // BPF_OBJ_GET_INFO_BY_FD: bpf_fd (u32), info_len (u32), info (u64).
    let mut attr = [0u64; 2];
    attr[0] = (fd.as_raw_fd() as u32 as u64) | ((std::mem::size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: info is a writable buffer of the size passed in attr.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
    Ok(info[2] as u32)
}

/// Reads entries `0..n` of a per-CPU array map of `value_size`-byte values
/// into `out` (cleared first): `ncpus` values per entry, each padded to 8
/// bytes, as the kernel lays them out. `BPF_MAP_LOOKUP_BATCH` (Linux 5.6),
/// [`BATCH`] entries per call: reading 65,536 flows' counters one
/// `BPF_MAP_LOOKUP_ELEM` at a time held the datapath thread for a third of
/// a second, and misses waited behind it.
pub fn percpu_array_read(
    fd: BorrowedFd<'_>,
    n: u32,
    value_size: usize,
    ncpus: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    const BATCH: u32 = 8192;
    let stride = value_size.next_multiple_of(8) * ncpus;
    out.clear();
    out.resize(n as usize * stride, 0);
    let mut keys = vec![0u32; BATCH as usize];
    // The batch token of an array is an index: where the next call starts.
    let (mut token_in, mut token_out) = (0u32, 0u32);
    let mut done = 0u32;
    while done < n {
        let want = (n - done).min(BATCH);
        // union bpf_attr, batch: in_batch, out_batch, keys, values (u64
        // each), count (u32), map_fd (u32), elem_flags, flags (u64).
        let mut attr = [0u64; 6];
        attr[0] = if done == 0 { 0 } else { &token_in as *const u32 as u64 };
        attr[1] = &mut token_out as *mut u32 as u64;
        attr[2] = keys.as_mut_ptr() as u64;
        attr[3] = out[done as usize * stride..].as_mut_ptr() as u64;
        attr[4] = u64::from(want) | (u64::from(fd.as_raw_fd() as u32) << 32);
        // SAFETY: every pointer in attr is to a buffer of this frame that
        // holds `want` keys and `want` entries' values, and outlives the call.
        let r = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        // The kernel writes back how many entries it read.
        let got = (attr[4] & 0xffff_ffff) as u32;
        match r {
            Ok(_) => {}
            // ENOENT: the map ended (fewer entries than asked for).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                out.truncate((done + got) as usize * stride);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if got == 0 {
            break;
        }
        done += got;
        token_in = token_out;
    }
    out.truncate(done as usize * stride);
    Ok(())
}
