//! What the conntrack refresh round's walks of the kernel's tables cost at
//! scale (issue 8): `RevNatTable::used_since` over `mdp_rev_nat` and
//! `ct_used_since` over `mdp_ct`, each filled with N entries, every
//! `used_every`-th of them used by a reply a second ago.
//!
//! ```text
//! sudo cargo run --release -p midonet-datapath --example revnat_walk -- [N] [ROUNDS]
//! ```
//!
//! Loads the programs into a pin directory of its own
//! (`/run/midonet/bpf/example-revnat-walk-<pid>`), removed at the end.
//! Prints the median and the slowest walk of ROUNDS (default 11), in ms.
//! N defaults to 120,000 (of the maps' 131,072: an LRU map evicts a little
//! before it is full).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use midonet_datapath::ebpf::abi;
use midonet_datapath::ebpf::loader::{remove_pins, Bpf};
use midonet_datapath::{CtKey, RevNatKey, RevNatKind, RevNatTable};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(120_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(11);
    let used_every = 4;
    let dir = std::path::PathBuf::from(format!(
        "/run/midonet/bpf/example-revnat-walk-{}",
        std::process::id()
    ));
    let _ = remove_pins(&dir);
    let bpf = match Bpf::load(&dir) {
        Ok(b) => b,
        Err(e) => {
            let _ = remove_pins(&dir);
            eprintln!("loading the programs (root, and clang at build time): {e}");
            std::process::exit(1);
        }
    };
    let rn = bpf.rev_nat.clone();
    let fill = Instant::now();
    let now = u64::try_from(rn.now().as_nanos()).unwrap_or(u64::MAX);
    let data = aya::maps::MapData::from_pin(dir.join("mdp_rev_nat")).expect("pinned mdp_rev_nat");
    let mut nat: aya::maps::HashMap<_, abi::NatKeyBytes, abi::NatValBytes> =
        aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(data)).expect("typed");
    let data = aya::maps::MapData::from_pin(dir.join("mdp_ct")).expect("pinned mdp_ct");
    let mut ct: aya::maps::HashMap<_, [u8; abi::CT_KEY_LEN], [u8; abi::CT_VAL_LEN]> =
        aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(data)).expect("typed");
    let local = Ipv4Addr::new(10, 0, 0, 1);
    for i in 0..n {
        let (src, port) = (Ipv4Addr::from(0xcb00_7100 + (i >> 16)), (i & 0xffff) as u16);
        let used_ns = if i % used_every == 0 { now - 1_000_000_000 } else { 1 };
        let key = RevNatKey {
            tracker: [7; 16],
            kind: RevNatKind::Snat,
            proto: 6,
            src,
            dst: Ipv4Addr::new(192, 0, 2, 1),
            src_port: 80,
            dst_port: port,
        };
        let v = abi::NatVal { ip: local, port, local: true, tcp_flags: 0x10, used_ns };
        nat.insert(abi::encode_nat_key(&key), abi::encode_nat_val(&v), 0).expect("binding");
        let conn = CtKey {
            tracker: [7; 16],
            proto: 6,
            src,
            dst: Ipv4Addr::new(192, 0, 2, 1),
            src_port: port,
            dst_port: 80,
        };
        // `struct mdp_ct_val`: last use, then the TCP flags.
        let mut v = [0u8; abi::CT_VAL_LEN];
        v[0..8].copy_from_slice(&used_ns.to_ne_bytes());
        v[8] = 0x10;
        ct.insert(abi::encode_ct_key(&conn), v, 0).expect("connection");
    }
    println!("filled {n} bindings and {n} connections in {:.1} s", fill.elapsed().as_secs_f64());
    let since = Duration::from_nanos(now - 2_000_000_000);
    let walk = |f: &dyn Fn() -> usize| {
        let mut ms: Vec<f64> = Vec::with_capacity(rounds);
        let mut found = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            found = f();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        (ms[ms.len() / 2], ms[ms.len() - 1], found)
    };
    let (p50, max, found) = walk(&|| rn.used_since(since).len());
    println!("used_since (mdp_rev_nat): median {p50:.1} ms, slowest {max:.1} ms, {found} used");
    let (p50, max, found) = walk(&|| rn.ct_used_since(since).len());
    println!("ct_used_since (mdp_ct):   median {p50:.1} ms, slowest {max:.1} ms, {found} used");
    drop(nat);
    drop(ct);
    drop(bpf);
    let _ = remove_pins(&dir);
}
