//! No allocation on the L2 unicast path after warm-up, tracing off: proven
//! with a counting global allocator.
//!
//! `unsafe` is needed to implement `GlobalAlloc`; it is confined to this
//! test binary. The counter is armed per thread (a const-initialised
//! thread-local, which itself never allocates), so the test harness's own
//! threads cannot disturb the count.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use midonet_sim::*;

#[path = "../benches/common.rs"]
mod common;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn armed() -> bool {
    ARMED.try_with(Cell::get).unwrap_or(false)
}

fn arm(on: bool) {
    ARMED.with(|a| a.set(on));
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments,
// which upholds GlobalAlloc's contract; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if armed() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if armed() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: ptr came from System with `layout`; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn l2_unicast_does_not_allocate_after_warm_up() {
    let w = common::l2();
    let mut out = SimResult::default();
    let mut icmp = IcmpRateLimiter::default();
    for i in 0..100 {
        simulate_into(&w.snap, &w.state, &NoConntrack, &mut icmp, &w.input(i), &mut out);
    }
    assert_eq!(out.decision, Decision::Forward);
    arm(true);
    for i in 0..10_000 {
        simulate_into(&w.snap, &w.state, &NoConntrack, &mut icmp, &w.input(i), &mut out);
    }
    arm(false);
    let n = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(out.decision, Decision::Forward);
    assert_eq!(n, 0, "{n} allocations in 10,000 L2 simulations");
    // The counter does count: a traced simulation allocates its steps.
    let mut traced = w.input(0);
    traced.trace = true;
    arm(true);
    simulate_into(&w.snap, &w.state, &NoConntrack, &mut icmp, &traced, &mut out);
    arm(false);
    assert!(ALLOCS.load(Ordering::SeqCst) > 0, "allocator hook is live");
}
