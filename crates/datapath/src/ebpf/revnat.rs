//! The `ebpf` provider's reverse-NAT table ([`RevNatTable`]): the pinned
//! maps `mdp_rev_nat` (bindings, an LRU hash) and `mdp_recirc` (what each
//! recirculation id translates with), which a split flow's first half
//! reads in the kernel (`rev_nat_path` in `bpf/datapath.c`), and the
//! socket filter `mdp_state`, which fills `mdp_rev_nat` from flow-state
//! messages as they arrive.
//!
//! * Plain `bpf(2)` calls on descriptors of its own (`sys::RawMap`), so
//!   any thread may call it, without the datapath thread; it stays usable
//!   after the provider stops (the maps and the program live while a
//!   descriptor does).
//! * Bindings are as [`RevNatKey`] says: a reply's 5-tuple as it arrives
//!   at the translating device, its kind, and what it gets back. An
//!   evicted binding (the map is an LRU of [`abi::MAX_REV_NAT`]) only
//!   costs that reply a miss: the agent still translates it.
//! * [`RevNatTable::last_used`] is `bpf_ktime_get_coarse_ns()` of the last
//!   reply the kernel translated with the binding; [`RevNatTable::now`]
//!   reads the same clock (`CLOCK_MONOTONIC_COARSE`).
//!   [`RevNatTable::used_since`] walks the map for the bindings used since
//!   then, with the TCP flags of their replies (the low 8 bits, OR'ed in
//!   atomically, so two CPUs translating replies of one binding at the
//!   same instant both keep theirs; the stamp is a plain store).
//! * [`RevNatTable::remove_exact`] reads, compares and deletes: a binding
//!   written in between (by `mdp_state`, from a peer's message) can go with
//!   it, which costs its replies a miss until the agent writes it again.
//! * Conntrack behind split flows: `mdp_ct` (connections, an LRU hash of
//!   [`abi::MAX_CT`], keyed as [`CtKey`]) and `mdp_recirc_ct` (which
//!   recirculation ids need the reply's connection in it), filled by the
//!   agent and by `mdp_state` as `mdp_rev_nat` is; an entry's last use and
//!   TCP flags are those of the replies that took a second half through it.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::Duration;

use super::abi::{self, NatVal, NAT_VAL_LEN, RECIRC_LEN};
use super::sys;
use crate::{CtKey, DpError, RevNatEntry, RevNatKey, RevNatKind, RevNatTable};

fn io(what: &str, e: std::io::Error) -> DpError {
    DpError::Io { what: what.into(), source: e }
}

/// See the module docs.
pub struct KernelRevNat {
    rev_nat: sys::RawMap,
    recirc: sys::RawMap,
    ct: sys::RawMap,
    recirc_ct: sys::RawMap,
    state_prog: OwnedFd,
}

/// The descriptors [`KernelRevNat`] works on.
pub struct RevNatFds {
    /// `mdp_rev_nat`.
    pub rev_nat: OwnedFd,
    /// `mdp_recirc`.
    pub recirc: OwnedFd,
    /// `mdp_ct`.
    pub ct: OwnedFd,
    /// `mdp_recirc_ct`.
    pub recirc_ct: OwnedFd,
    /// The loaded `mdp_state` program.
    pub state_prog: OwnedFd,
}

impl KernelRevNat {
    /// From the maps' and the program's descriptors.
    pub fn new(fds: RevNatFds) -> std::io::Result<Self> {
        Ok(KernelRevNat {
            rev_nat: sys::RawMap::new(fds.rev_nat)?,
            recirc: sys::RawMap::new(fds.recirc)?,
            ct: sys::RawMap::new(fds.ct)?,
            recirc_ct: sys::RawMap::new(fds.recirc_ct)?,
            state_prog: fds.state_prog,
        })
    }

    /// Connection `key` as the kernel holds it: (last use, 0 = none; TCP
    /// flags OR'ed).
    pub fn ct_get(&self, key: &CtKey) -> Result<Option<(u64, u8)>, DpError> {
        let mut v = [0u8; abi::CT_VAL_LEN];
        let found =
            self.ct.lookup(&abi::encode_ct_key(key), &mut v).map_err(|e| io("mdp_ct", e))?;
        Ok(found.then(|| abi::decode_ct_val(&v)))
    }

    /// The binding under `key`, as the kernel holds it.
    pub fn get(&self, key: &RevNatKey) -> Result<Option<NatVal>, DpError> {
        let mut v = [0u8; NAT_VAL_LEN];
        let found = self
            .rev_nat
            .lookup(&abi::encode_nat_key(key), &mut v)
            .map_err(|e| io("mdp_rev_nat", e))?;
        Ok(found.then(|| abi::decode_nat_val(&v)))
    }

    /// What recirculation `id` translates with, if it is set (an earlier
    /// agent's ids survive a restart with the flows that name them).
    pub fn recirc(&self, id: u32) -> Result<Option<(RevNatKind, [u8; 16])>, DpError> {
        let mut v = [0u8; RECIRC_LEN];
        if id >= crate::RECIRC_MAX {
            return Ok(None);
        }
        self.recirc.lookup(&id.to_ne_bytes(), &mut v).map_err(|e| io("mdp_recirc", e))?;
        Ok(abi::decode_recirc(&v))
    }
}

impl RevNatTable for KernelRevNat {
    fn set_recirc(&self, id: u32, kind: RevNatKind, tracker: [u8; 16]) -> Result<(), DpError> {
        if id >= crate::RECIRC_MAX {
            return Err(io("mdp_recirc", std::io::Error::from(std::io::ErrorKind::InvalidInput)));
        }
        self.recirc
            .update(&id.to_ne_bytes(), &abi::encode_recirc(kind, &tracker))
            .map_err(|e| io("mdp_recirc", e))
    }

    /// A binding already there keeps when it was last used, and the TCP
    /// flags its replies carried if it still translates to the same address
    /// and port.
    fn upsert(&self, entries: &[RevNatEntry]) -> Result<(), DpError> {
        for e in entries {
            let k = abi::encode_nat_key(&e.key);
            // A new binding (a miss that allocated it): one write. One
            // already there as it is (a flow simulated again): none.
            let new = NatVal { ip: e.ip, port: e.port, local: e.local, tcp_flags: 0, used_ns: 0 };
            let written = self.rev_nat.try_insert_new(&k, &abi::encode_nat_val(&new));
            if written.map_err(|e| io("mdp_rev_nat", e))? {
                continue;
            }
            let mut old = [0u8; NAT_VAL_LEN];
            let (used_ns, tcp_flags) = match self.rev_nat.lookup(&k, &mut old) {
                Ok(true) => {
                    let o = abi::decode_nat_val(&old);
                    if (o.ip, o.port, o.local) == (e.ip, e.port, e.local) {
                        continue;
                    }
                    let same = (o.ip, o.port) == (e.ip, e.port);
                    (o.used_ns, if same { o.tcp_flags } else { 0 })
                }
                Ok(false) => (0, 0),
                Err(e) => return Err(io("mdp_rev_nat", e)),
            };
            let v = NatVal { ip: e.ip, port: e.port, local: e.local, tcp_flags, used_ns };
            self.rev_nat.update(&k, &abi::encode_nat_val(&v)).map_err(|e| io("mdp_rev_nat", e))?;
        }
        Ok(())
    }

    fn remove(&self, keys: &[RevNatKey]) -> Result<(), DpError> {
        for k in keys {
            self.rev_nat.delete(&abi::encode_nat_key(k)).map_err(|e| io("mdp_rev_nat", e))?;
        }
        Ok(())
    }

    fn remove_exact(&self, entries: &[RevNatEntry]) -> Result<(), DpError> {
        for e in entries {
            let k = abi::encode_nat_key(&e.key);
            let mut v = [0u8; NAT_VAL_LEN];
            if self.rev_nat.lookup(&k, &mut v).map_err(|e| io("mdp_rev_nat", e))? {
                let held = abi::decode_nat_val(&v);
                if (held.ip, held.port) == (e.ip, e.port) {
                    self.rev_nat.delete(&k).map_err(|e| io("mdp_rev_nat", e))?;
                }
            }
        }
        Ok(())
    }

    fn last_used(&self, key: &RevNatKey) -> Option<Duration> {
        match self.get(key) {
            Ok(Some(v)) if v.used_ns != 0 => Some(Duration::from_nanos(v.used_ns)),
            _ => None,
        }
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(sys::monotonic_coarse_ns())
    }

    /// A walk of the whole map in batches (a few calls for its 131,072
    /// entries). The flags are the low 8 bits of the TCP flags the
    /// binding's replies carried since it was written (FIN and RST among
    /// them); an unreadable map reports nothing.
    fn used_since(&self, since: Duration) -> Vec<(RevNatEntry, u16)> {
        let since = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let r = self.rev_nat.for_each(|k, v| {
            let (Ok(k), Ok(v)) = (k.try_into(), v.try_into()) else { return };
            let v = abi::decode_nat_val(v);
            if v.used_ns == 0 || v.used_ns < since {
                return;
            }
            if let Some(key) = abi::decode_nat_key(k) {
                let e = RevNatEntry { key, ip: v.ip, port: v.port, local: v.local };
                out.push((e, u16::from(v.tcp_flags)));
            }
        });
        if let Err(e) = r {
            tracing::debug!(error = %e, "reading mdp_rev_nat");
        }
        out
    }

    /// `SO_ATTACH_BPF` of `mdp_state` (replacing any filter the socket
    /// had); the socket holds the program from then on.
    fn attach_state_socket(&self, fd: RawFd) -> Result<(), DpError> {
        sys::attach_socket_filter(fd, self.state_prog.as_fd())
            .map_err(|e| io("attaching mdp_state to the flow-state socket", e))
    }

    fn set_recirc_conntrack(&self, id: u32, tracker: Option<[u8; 16]>) -> Result<(), DpError> {
        if id >= crate::RECIRC_MAX {
            return Err(io(
                "mdp_recirc_ct",
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            ));
        }
        let v = match tracker {
            Some(t) => abi::encode_recirc_ct(&t),
            None => [0u8; abi::RECIRC_CT_LEN],
        };
        self.recirc_ct.update(&id.to_ne_bytes(), &v).map_err(|e| io("mdp_recirc_ct", e))
    }

    fn ct_insert(&self, keys: &[CtKey], fresh: bool) -> Result<(), DpError> {
        let zero = [0u8; abi::CT_VAL_LEN];
        for k in keys {
            let k = abi::encode_ct_key(k);
            let r = if fresh { self.ct.update(&k, &zero) } else { self.ct.insert_new(&k, &zero) };
            r.map_err(|e| io("mdp_ct", e))?;
        }
        Ok(())
    }

    fn ct_remove(&self, keys: &[CtKey]) -> Result<(), DpError> {
        for k in keys {
            self.ct.delete(&abi::encode_ct_key(k)).map_err(|e| io("mdp_ct", e))?;
        }
        Ok(())
    }

    /// A walk of the whole map in batches; an unreadable map reports
    /// nothing.
    fn ct_keys(&self) -> Vec<CtKey> {
        let mut out = Vec::new();
        let r = self.ct.for_each(|k, _| {
            if let Ok(k) = k.try_into() {
                out.push(abi::decode_ct_key(k));
            }
        });
        if let Err(e) = r {
            tracing::debug!(error = %e, "reading mdp_ct");
        }
        out
    }

    /// A walk of the whole map in batches, as [`RevNatTable::used_since`].
    fn ct_used_since(&self, since: Duration) -> Vec<(CtKey, u16)> {
        let since = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let r = self.ct.for_each(|k, v| {
            let (Ok(k), Ok(v)) = (k.try_into(), v.try_into()) else { return };
            let (used_ns, flags) = abi::decode_ct_val(v);
            if used_ns != 0 && used_ns >= since {
                out.push((abi::decode_ct_key(k), u16::from(flags)));
            }
        });
        if let Err(e) = r {
            tracing::debug!(error = %e, "reading mdp_ct");
        }
        out
    }
}
