//! Flow-state replication delay (issue 8): from the ingress agent's send of
//! a connection's state to the binding installed in a peer's table, with
//! the agents' own code on both sides: `flowstate::Replicator::send` on one,
//! the receiver thread (`Replicator::spawn_receiver`: trust check, parse,
//! install) on the other, over UDP between two loopback addresses
//! (127.0.0.1 → 127.0.0.2, the agents' `flow_state_port`); the underlay
//! between hosts is a veth, whose cost this leaves out. The receiver thread
//! runs at idle priority (`flowstate::replicator`, `RX_BACKSTOP`): woken on
//! the spinning sender's CPU, it waits for the other CPU to take it, so
//! this delay is longer than the datapath's own (the ebpf socket filter
//! writes the state as the datagram is queued).
//!
//! Each message is what a miss through SNAT sends: one connection and one
//! binding, a new one each time, one message in flight at a time (1 ms
//! apart). Prints the message size and the delay's p50/p99/max.
//! Run: `cargo bench -p midonet-agent --bench replication` (N=… messages,
//! default 5000).

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use midonet_agent::flowstate::Replicator;
use midonet_agent::handler::View;
use midonet_sim::MemState;
use midonet_state::message::{conntrack_repr, nat_repr};
use midonet_state::{ConnKey, ConnState, NatBinding, NatKey, NatKind, TrackerId};
use midonet_wire::flowstate::FlowStateRepr;

mod common;

/// The agents' flow-state port here (not the default, so a running agent
/// does not matter).
const PORT: u16 = 29251;

fn main() {
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2));
    let sender = Replicator::bind(a, PORT).expect("bind the sender");
    let mut view = View::empty();
    view.ready = true;
    view.trusted_peers.insert(a);
    let (rx, _outboxes) = common::shared(
        view,
        MemState::default(),
        1 << 20,
        Some(Replicator::bind(b, PORT).expect("bind the receiver")),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let thread = Replicator::spawn_receiver(rx.clone(), stop.clone()).expect("receiver");

    let tracker = TrackerId(uuid::Uuid::from_u128(7));
    let mut delays = Vec::with_capacity(n);
    let mut size = 0;
    let mut lost = 0;
    for i in 0..n {
        let key = ConnKey {
            src: Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8),
            dst: Ipv4Addr::new(203, 0, 113, 1),
            src_port: 40000 + (i % 20000) as u16,
            dst_port: 8080,
            proto: 6,
            tracker,
        };
        let nk = NatKey::new(NatKind::Snat, key);
        let binding = NatBinding { ip: Ipv4Addr::new(203, 0, 113, 2), port: 1024 + i as u16 };
        let msg = FlowStateRepr {
            sender: *uuid::Uuid::from_u128(1).as_bytes(),
            ingress_port: *uuid::Uuid::from_u128(2).as_bytes(),
            egress_ports: vec![*uuid::Uuid::from_u128(3).as_bytes()],
            conntrack: vec![conntrack_repr(&key, ConnState::SynSent)],
            nat: vec![nat_repr(&nk, binding)],
            ..FlowStateRepr::default()
        };
        if i == 0 {
            let mut bytes = Vec::new();
            msg.emit_vec(&mut bytes).expect("encode");
            size = bytes.len();
        }
        let now = || rx.epoch.elapsed();
        let t0 = Instant::now();
        assert_eq!(sender.send(&msg, &[b]), 0, "sent");
        loop {
            if rx.flowstate.lock().nat.get(&nk, now()).is_some() {
                delays.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_millis(200) {
                lost += 1;
                break;
            }
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = thread.join();
    delays.sort();
    let at = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    println!(
        "replication: {} messages of {size} bytes (one connection, one binding); ingress send -> \
         peer installed: p50 {:.1} us, p99 {:.1} us, max {:.1} us; lost {lost}",
        delays.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        delays.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
    );
}
