//! The `ebpf` provider's system calls that the safe crates do not wrap:
//! the inject socket (AF_PACKET with virtio-net headers, each packet
//! carrying its action list in `SO_MARK`), the monotonic clocks the
//! kernel's counters are stamped with, map access by descriptor from any
//! thread ([`RawMap`]) and a socket filter's attachment. Like `crate::sys`,
//! every `unsafe` block is one libc call on memory it owns.
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

/// `CLOCK_MONOTONIC_COARSE` in ns: what `bpf_ktime_get_coarse_ns` reads
/// (the reverse-NAT bindings' last use).
pub fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec on the stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Attach the socket filter `prog` to socket `sock` (`SO_ATTACH_BPF`): the
/// socket holds the program from then on.
pub fn attach_socket_filter(sock: RawFd, prog: BorrowedFd<'_>) -> io::Result<()> {
    let p: libc::c_int = prog.as_raw_fd();
    // SAFETY: an int option, its size passed; the kernel checks `sock`.
    cvt(unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_BPF,
            (&p as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    })?;
    Ok(())
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

/// A map reached through plain `bpf(2)` calls, from any thread (aya's
/// typed maps want `&mut` to write). Keys and values must be exactly the
/// sizes the kernel reported for the map; other sizes are refused before
/// the kernel could read or write past them.
pub struct RawMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl RawMap {
    /// `fd` is a map's descriptor; asks the kernel for its sizes
    /// (`BPF_OBJ_GET_INFO_BY_FD`: `struct bpf_map_info` has `key_size` and
    /// `value_size` at offsets 8 and 12).
    pub fn new(fd: OwnedFd) -> io::Result<RawMap> {
        const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
        let mut info = [0u32; 20];
        let mut attr = [0u64; 2];
        attr[0] = (fd.as_raw_fd() as u32 as u64) | ((std::mem::size_of_val(&info) as u64) << 32);
        attr[1] = info.as_mut_ptr() as u64;
        // SAFETY: info is a writable buffer of the size passed in attr.
        unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
        Ok(RawMap { fd, key_size: info[2] as usize, value_size: info[3] as usize })
    }

    fn check(&self, key: &[u8], value: Option<usize>) -> io::Result<()> {
        if key.len() != self.key_size || value.is_some_and(|v| v != self.value_size) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        Ok(())
    }

    /// `BPF_MAP_*_ELEM`: the attribute union is map_fd, key, value, flags.
    fn elem(&self, cmd: libc::c_long, key: &[u8], value: u64, flags: u64) -> io::Result<bool> {
        let mut attr = [0u64; 4];
        attr[0] = u64::from(self.fd.as_raw_fd() as u32);
        attr[1] = key.as_ptr() as u64;
        attr[2] = value;
        attr[3] = flags;
        // SAFETY: the callers checked that key and value (when given) are
        // the map's key and value sizes; both outlive the call.
        match unsafe { bpf(cmd, &mut attr) } {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The value under `key` into `value`; `false` when there is none.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
        self.check(key, Some(value.len()))?;
        self.elem(BPF_MAP_LOOKUP_ELEM, key, value.as_mut_ptr() as u64, 0)
    }

    /// Write `value` under `key` (`BPF_ANY`).
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
        self.check(key, Some(value.len()))?;
        // The kernel only reads the value.
        self.elem(BPF_MAP_UPDATE_ELEM, key, value.as_ptr() as u64, 0).map(|_| ())
    }

    /// Write `value` under `key` only if the map holds nothing there
    /// (`BPF_NOEXIST`); an entry there already is left alone.
    pub fn insert_new(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.try_insert_new(key, value).map(|_| ())
    }

    /// [`insert_new`](Self::insert_new), saying whether it wrote (`false`:
    /// an entry was there).
    pub fn try_insert_new(&self, key: &[u8], value: &[u8]) -> io::Result<bool> {
        const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
        const BPF_NOEXIST: u64 = 1;
        self.check(key, Some(value.len()))?;
        // The kernel only reads the value.
        match self.elem(BPF_MAP_UPDATE_ELEM, key, value.as_ptr() as u64, BPF_NOEXIST) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every entry of a hash map, in batches (`BPF_MAP_LOOKUP_BATCH`,
    /// Linux 5.6): `f` gets each key and value. Entries written or removed
    /// meanwhile may be seen or not.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) -> io::Result<()> {
        const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
        const BATCH: usize = 4096;
        let (ks, vs) = (self.key_size.max(1), self.value_size.max(1));
        let mut keys = vec![0u8; BATCH * ks];
        let mut values = vec![0u8; BATCH * vs];
        // A hash map's batch token is a bucket index: where the next call starts.
        let (mut token_in, mut token_out) = (0u32, 0u32);
        let mut first = true;
        loop {
            // union bpf_attr, batch: in_batch, out_batch, keys, values (u64
            // each), count (u32), map_fd (u32), elem_flags, flags (u64).
            let mut attr = [0u64; 6];
            attr[0] = if first { 0 } else { &token_in as *const u32 as u64 };
            attr[1] = &mut token_out as *mut u32 as u64;
            attr[2] = keys.as_mut_ptr() as u64;
            attr[3] = values.as_mut_ptr() as u64;
            attr[4] = BATCH as u64 | (u64::from(self.fd.as_raw_fd() as u32) << 32);
            // SAFETY: keys and values hold BATCH keys and values of the
            // map's sizes, the tokens a u32 each; all outlive the call.
            let r = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
            let got = ((attr[4] & 0xffff_ffff) as usize).min(BATCH);
            let end = match r {
                Ok(_) => false,
                // ENOENT: the map ended with this batch.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                Err(e) => return Err(e),
            };
            for i in 0..got {
                f(&keys[i * ks..(i + 1) * ks], &values[i * vs..(i + 1) * vs]);
            }
            if end || got == 0 {
                return Ok(());
            }
            token_in = token_out;
            first = false;
        }
    }

    /// Delete `key`; `false` when it was not there.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
        self.check(key, None)?;
        self.elem(BPF_MAP_DELETE_ELEM, key, 0, 0)
    }
}
