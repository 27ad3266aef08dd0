//! Bytes per conntrack entry at 1 M entries (crate docs, "Memory per
//! conntrack entry"): the table's own count of its heap and, as a check
//! from outside, the growth of the process's resident set.
//!
//! `cargo run --release -p midonet-state --example conntrack_memory [entries]`

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use midonet_state::{proto, ConnKey, ConnTable, ConntrackCfg, TrackerId};

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let before = rss();
    let mut t =
        ConnTable::new(ConntrackCfg { max_entries: n as usize, ..ConntrackCfg::default() }, 0x5eed);
    let tracker = TrackerId(uuid::Uuid::from_u128(1));
    let start = Instant::now();
    for i in 0..n {
        let k = ConnKey {
            src: Ipv4Addr::from(0x0a00_0000 | (i >> 16)),
            dst: Ipv4Addr::new(192, 0, 2, 1),
            src_port: (i & 0xffff) as u16,
            dst_port: 443,
            proto: proto::TCP,
            tracker,
        };
        if t.track(k, 0x002, Duration::ZERO).is_err() {
            eprintln!("table full at {i}");
            break;
        }
    }
    let took = start.elapsed();
    let after = rss();
    println!("entries:          {}", t.len());
    println!(
        "heap (table):     {} bytes, {:.1} bytes/entry",
        t.heap_size(),
        t.heap_size() as f64 / t.len() as f64
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "rss growth:       {} bytes, {:.1} bytes/entry",
            a - b,
            (a - b) as f64 / t.len() as f64
        );
    }
    println!("insert rate:      {:.1} M/s", f64::from(n) / took.as_secs_f64() / 1e6);
}
