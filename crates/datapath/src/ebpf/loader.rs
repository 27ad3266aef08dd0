//! Loading the kernel fast path with aya: the object clang built
//! (`build.rs`), its maps pinned in bpffs, and its programs attached to
//! interfaces through TCX links pinned beside them.
//!
//! ```text
//!  /run/midonet/bpf/<instance>/<abi hash>/mdp_flows, mdp_actions, ...  maps (reused when present)
//!                                           /links/<name>                 one TCX link per hook
//! ```
//!
//! Pinning is what lets installed flows outlive the agent: a restarting
//! agent finds the maps and links, loads its programs, and swaps each link
//! to the new program atomically (`BPF_LINK_UPDATE`), so no packet is
//! processed without a program. The ABI hash (of `bpf/datapath.h`) in the
//! path keeps an agent with another map layout away from old maps.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, SocketFilter, TcAttachType};
use aya::{Ebpf, EbpfLoader};

use super::abi::{self, ActListBytes, KeyBytes};

/// The object file, or why there is none.
pub fn object() -> Result<&'static [u8], String> {
    let missing = env!("MDP_BPF_MISSING");
    let obj: &'static [u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/midonet_dp.bpf.o"));
    if !missing.is_empty() || obj.is_empty() {
        return Err(format!("built without the BPF object: {missing}"));
    }
    Ok(obj)
}

/// Version of the map layout (a hash of `bpf/datapath.h`).
pub const ABI_HASH: &str = env!("MDP_ABI_HASH");

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The default root of our pins: a bpffs of its own (see [`ensure_bpffs`]).
pub const PIN_ROOT: &str = "/run/midonet/bpf";

/// An error with its whole source chain in the message (aya's errors say
/// which syscall failed; the errno is their source).
fn err(what: impl Into<String>, e: impl std::error::Error) -> io::Error {
    let mut s = format!("{}: {e}", what.into());
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    io::Error::other(s)
}

fn missing(what: &str) -> io::Error {
    io::Error::other(format!("{what}: not in the BPF object"))
}

fn is_bpffs(path: &str) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| {
            // f_type's width differs between targets.
            #[allow(clippy::unnecessary_cast)]
            let t = s.filesystem_type().0 as i64;
            t == BPF_FS_MAGIC
        })
        .unwrap_or(false)
}

/// Mount bpffs on [`PIN_ROOT`] unless it is there. Not under /sys:
/// `ip netns exec` remounts /sys in a private mount namespace, where a
/// bpffs mounted on /sys/fs/bpf would vanish with the process (and with it
/// every pin: the programs detach); other mounts, /run among them, are
/// shared with the parent namespace, so a bpffs the host (or a test
/// harness) mounted on /run/midonet/bpf is the one the agent pins into.
pub fn ensure_bpffs() -> io::Result<()> {
    if is_bpffs(PIN_ROOT) {
        return Ok(());
    }
    std::fs::create_dir_all(PIN_ROOT).map_err(|e| err(format!("creating {PIN_ROOT}"), e))?;
    nix::mount::mount(
        Some("bpf"),
        PIN_ROOT,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| err(format!("mounting bpffs on {PIN_ROOT}"), e))
}

/// The programs of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prog {
    /// TC ingress of a VM interface's host end.
    Port,
    /// TC ingress of the vxlan device.
    Tunnel,
    /// TC ingress of the inject veth.
    Inject,
    /// TC ingress of the underlay interface: decapsulation.
    Underlay,
}

/// The socket filter of the agent's flow-state socket (see
/// [`super::revnat`]); not a TC program, so not a [`Prog`].
pub const STATE_PROG: &str = "mdp_state";

impl Prog {
    pub fn name(self) -> &'static str {
        match self {
            Prog::Port => "mdp_port",
            Prog::Tunnel => "mdp_tunnel",
            Prog::Inject => "mdp_inject",
            Prog::Underlay => "mdp_underlay",
        }
    }
}

/// Typed handles on every map.
pub struct Maps {
    pub flows: HashMap<MapData, KeyBytes, [u8; 8]>,
    pub masks: Array<MapData, KeyBytes>,
    pub mask_list: Array<MapData, [u8; abi::MASK_LIST_LEN]>,
    pub mask_hits: PerCpuArray<MapData, u64>,
    pub actions: Array<MapData, ActListBytes>,
    pub flow_stats: PerCpuArray<MapData, [u64; 4]>,
    /// The same map's descriptor, for `BPF_MAP_LOOKUP_BATCH` (aya has no
    /// batch read): every flow's counters in a few calls, not one each.
    pub flow_stats_fd: OwnedFd,
    pub flow_meta: HashMap<MapData, u32, [u8; abi::META_LEN]>,
    pub ports: Array<MapData, [u8; abi::PORT_LEN]>,
    pub if_ports: HashMap<MapData, u32, [u8; 8]>,
    pub port_stats: PerCpuArray<MapData, [u64; 4]>,
    pub vni_ports: HashMap<MapData, u32, u32>,
    pub config: Array<MapData, [u8; abi::CONFIG_LEN]>,
    pub counters: PerCpuArray<MapData, u64>,
    /// `struct mdp_upcall_limit` per port slot: credit, last, upcalls,
    /// limited, borrowed.
    pub upcall_limits: PerCpuArray<MapData, [u64; 5]>,
    /// `struct mdp_limit_config`: [`crate::UpcallLimits::kernel_config`].
    pub limit_config: Array<MapData, [u64; 5]>,
    /// Tunnel peers: outer IPv4 source (host order) → 1.
    pub tunnel_peers: HashMap<MapData, u32, u32>,
    pub tunnel_nh: HashMap<MapData, u32, [u8; abi::NEXTHOP_LEN]>,
    /// `[0]` = 1 once the agent pushed a peer set (the filter is on).
    pub tunnel_filter: Array<MapData, u32>,
    /// The exact-match cache (an LRU hash filled by the programs).
    pub exact: HashMap<MapData, KeyBytes, abi::ExactBytes>,
    /// Generation of each flow counter slot: bumped when the slot's flow
    /// goes, which retires the exact-match entries naming it.
    pub flow_gen: Array<MapData, u32>,
    pub upcalls: RingBuf<MapData>,
    /// Misses let through past their port's budget ([`crate::limit`]):
    /// read only when `upcalls` is empty.
    pub upcalls_spare: RingBuf<MapData>,
}

/// The loaded object: programs (owned by `ebpf`) and maps.
pub struct Bpf {
    ebpf: Ebpf,
    pub maps: Maps,
    pub dir: PathBuf,
    /// The maps were already pinned (left by an earlier agent).
    pub adopted: bool,
    /// The reverse-NAT table (`mdp_rev_nat`, `mdp_recirc`, `mdp_state`),
    /// on descriptors of its own, for any thread.
    pub rev_nat: std::sync::Arc<super::revnat::KernelRevNat>,
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> io::Result<T>
where
    T: TryFrom<aya::maps::Map>,
    <T as TryFrom<aya::maps::Map>>::Error: std::error::Error,
{
    let m = ebpf.take_map(name).ok_or_else(|| missing(name))?;
    T::try_from(m).map_err(|e| err(format!("map {name}"), e))
}

/// A descriptor of its own on map `name` (the typed handle keeps the other).
fn map_fd(ebpf: &Ebpf, name: &str) -> io::Result<OwnedFd> {
    use aya::maps::Map;
    let data = match ebpf.map(name).ok_or_else(|| missing(name))? {
        Map::PerCpuArray(d) | Map::Array(d) | Map::HashMap(d) | Map::LruHashMap(d) => d,
        _ => return Err(io::Error::other(format!("map {name}: not an array or a hash"))),
    };
    data.fd().as_fd().try_clone_to_owned().map_err(|e| err(format!("map {name}"), e))
}

impl Bpf {
    /// Load the object with its maps pinned under `dir` (created; existing
    /// pins are reused) and load every program into the kernel.
    pub fn load(dir: &Path) -> io::Result<Bpf> {
        let obj = object().map_err(io::Error::other)?;
        if dir.starts_with(PIN_ROOT) {
            ensure_bpffs()?;
        }
        std::fs::create_dir_all(dir.join("links"))
            .map_err(|e| err(dir.display().to_string(), e))?;
        let adopted = dir.join("mdp_flows").exists();
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(dir)
            .load(obj)
            .map_err(|e| err("loading the BPF object", e))?;
        for p in [Prog::Port, Prog::Tunnel, Prog::Inject, Prog::Underlay] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(p.name())
                .ok_or_else(|| missing(p.name()))?
                .try_into()
                .map_err(|e| err(p.name(), e))?;
            prog.load().map_err(|e| err(format!("verifying {}", p.name()), e))?;
        }
        let state: &mut SocketFilter = ebpf
            .program_mut(STATE_PROG)
            .ok_or_else(|| missing(STATE_PROG))?
            .try_into()
            .map_err(|e| err(STATE_PROG, e))?;
        state.load().map_err(|e| err(format!("verifying {STATE_PROG}"), e))?;
        let state_fd = state
            .fd()
            .map_err(|e| err(STATE_PROG, e))?
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| err(STATE_PROG, e))?;
        let rev_nat = super::revnat::KernelRevNat::new(super::revnat::RevNatFds {
            rev_nat: map_fd(&ebpf, "mdp_rev_nat")?,
            recirc: map_fd(&ebpf, "mdp_recirc")?,
            ct: map_fd(&ebpf, "mdp_ct")?,
            recirc_ct: map_fd(&ebpf, "mdp_recirc_ct")?,
            state_prog: state_fd,
        })
        .map_err(|e| err("the reverse-NAT maps", e))?;
        let maps = Maps {
            flows: take(&mut ebpf, "mdp_flows")?,
            masks: take(&mut ebpf, "mdp_masks")?,
            mask_list: take(&mut ebpf, "mdp_mask_list")?,
            mask_hits: take(&mut ebpf, "mdp_mask_hits")?,
            actions: take(&mut ebpf, "mdp_actions")?,
            flow_stats_fd: map_fd(&ebpf, "mdp_flow_stats")?,
            flow_stats: take(&mut ebpf, "mdp_flow_stats")?,
            flow_meta: take(&mut ebpf, "mdp_flow_meta")?,
            ports: take(&mut ebpf, "mdp_ports")?,
            if_ports: take(&mut ebpf, "mdp_if_ports")?,
            port_stats: take(&mut ebpf, "mdp_port_stats")?,
            vni_ports: take(&mut ebpf, "mdp_vni_ports")?,
            config: take(&mut ebpf, "mdp_config")?,
            counters: take(&mut ebpf, "mdp_counters")?,
            upcall_limits: take(&mut ebpf, "mdp_upcall_limits")?,
            limit_config: take(&mut ebpf, "mdp_limit_config")?,
            tunnel_peers: take(&mut ebpf, "mdp_tunnel_peers")?,
            tunnel_nh: take(&mut ebpf, "mdp_tunnel_nh")?,
            tunnel_filter: take(&mut ebpf, "mdp_tunnel_filter")?,
            exact: take(&mut ebpf, "mdp_exact")?,
            flow_gen: take(&mut ebpf, "mdp_flow_gen")?,
            upcalls: take(&mut ebpf, "mdp_upcalls")?,
            upcalls_spare: take(&mut ebpf, "mdp_upcalls_spare")?,
        };
        Ok(Bpf { ebpf, maps, dir: dir.to_owned(), adopted, rev_nat: std::sync::Arc::new(rev_nat) })
    }

    pub fn program(&mut self, p: Prog) -> io::Result<&mut SchedClassifier> {
        self.ebpf
            .program_mut(p.name())
            .ok_or_else(|| missing(p.name()))?
            .try_into()
            .map_err(|e| err(p.name(), e))
    }

    fn link_path(&self, pin: &str) -> PathBuf {
        self.dir.join("links").join(pin)
    }

    /// Attach `p` at TC ingress of `ifname`, under the pinned link `pin`.
    /// A link left pinned there is switched to this program in place.
    pub fn attach(&mut self, p: Prog, ifname: &str, pin: &str) -> io::Result<()> {
        let path = self.link_path(pin);
        let what = format!("attaching {} to {ifname}", p.name());
        let old = if path.exists() {
            match PinnedLink::from_pin(&path) {
                Ok(l) => Some(l),
                Err(_) => {
                    // A pin whose link is gone (its interface was deleted).
                    let _ = std::fs::remove_file(&path);
                    None
                }
            }
        } else {
            None
        };
        let prog = self.program(p)?;
        match old {
            Some(pinned) => {
                let link = SchedClassifierLink::try_from(FdLink::from(pinned))
                    .map_err(|e| err(&what, e))?;
                // The pin keeps the link; the fd aya now holds may go.
                prog.attach_to_link(link).map_err(|e| err(&what, e))?;
            }
            None => {
                let id = prog
                    .attach_with_options(
                        ifname,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(|e| err(&what, e))?;
                let link = prog.take_link(id).map_err(|e| err(&what, e))?;
                let fd: FdLink = link.try_into().map_err(|e| err(&what, e))?;
                fd.pin(&path).map_err(|e| err(&what, e))?;
            }
        }
        Ok(())
    }

    /// Detach the hook pinned as `pin` (nothing if there is none).
    pub fn detach(&self, pin: &str) -> io::Result<()> {
        let path = self.link_path(pin);
        if !path.exists() {
            return Ok(());
        }
        // Hold the link while unpinning, then close it: the last put then
        // comes from our close, which frees the link (and detaches the
        // program) before we return. The put of an unlink alone is
        // deferred to a workqueue, and a re-attach right after would
        // still find the program there.
        match PinnedLink::from_pin(&path) {
            Ok(l) => drop(l.unpin().map_err(|e| err(format!("detaching {pin}"), e))?),
            Err(_) => {
                std::fs::remove_file(&path).map_err(|e| err(format!("detaching {pin}"), e))?
            }
        }
        Ok(())
    }

    /// Names of the pinned links (for adoption and cleanup).
    pub fn pinned_links(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("links"))
            .map(|rd| {
                rd.flatten().filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect()
            })
            .unwrap_or_default()
    }
}

/// Remove every pin of an instance (maps and links): detaches its programs
/// and frees its maps once nothing else holds them.
pub fn remove_pins(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
