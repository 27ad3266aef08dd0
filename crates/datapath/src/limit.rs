//! Upcall rate limiting per input port: a VM that floods new flows cannot
//! take the miss path from the other VMs on its host.
//!
//! MidoNet (reference §1.8) runs upcalls through a hierarchical token
//! bucket: a root of 256, tunnel and VTEP children of 128, and a bucket of
//! 32 per VM port sharing the rest; a packet without a token is read and
//! dropped. We keep its idea (a bucket per port, the tunnel its own) and
//! make both sizes a rate and a burst the operator sets:
//!
//! * every local port has a bucket of `port_burst` upcalls refilled at
//!   `port_rate` per second; misses arriving over the tunnel (a VNI that is
//!   not a local port's) share one bucket of `tunnel_burst` / `tunnel_rate`;
//! * a miss without a token is dropped before it reaches the agent (no
//!   copy, no simulation) and counted twice: under
//!   [`DropReason::UpcallRateLimited`](crate::DropReason::UpcallRateLimited)
//!   and in the port's `upcall_limited` counter;
//! * a rate of 0 means no limit;
//! * a budget is a floor, not a ceiling, while the agent keeps up: a miss
//!   past its port's budget still goes up (*borrowed*, counted in the
//!   port's `upcall_borrowed` and `upcalls`) while fewer than `spare_depth`
//!   borrowed misses wait for the agent. MidoNet's HTB works the same way
//!   (its buckets are refilled as the agent finishes packets, and a child
//!   borrows from the root), and so should we: a VM opening connections
//!   through stateful rules faster than its budget on a host with a free
//!   miss path lost a SYN (a 1 s retransmission) per miss over budget,
//!   while the agent sat idle. Borrowed misses never delay a miss within
//!   its budget: the eBPF program puts them in a ring of their own, which
//!   the agent reads one miss at a time between batches of the main ring.
//!   The cost: packets of one new flow that straddle its port's budget can
//!   reach the agent out of order (a lent one after a later one within the
//!   budget, or after one that hit the flow installed meanwhile), where
//!   without lending the lent one would have been dropped. A provider lends
//!   only if it says it can serve lent misses after the others (the eBPF
//!   provider only while it simulates inline, not on miss workers)
//!   ([`UpcallLimiter::set_room`]). The userspace provider does not: its
//!   one thread simulates misses inline, in arrival order, so a lent miss
//!   would hold up everything behind it (with lending on the flooding
//!   port's half-empty batches, a neighbour's connect in
//!   `a_flooding_vm_does_not_starve_new_connections_of_others_userspace`
//!   took 3.9 ms at the median against 0.09 ms quiet).
//!
//! A bucket is a time credit, not a token count (the GCRA form of a token
//! bucket): an upcall costs `1 s / rate` of credit, credit accrues with time
//! and is capped at `burst` upcalls' worth. The same arithmetic runs in the
//! eBPF program, per CPU, with the costs precomputed here
//! ([`UpcallLimits::costs`]), so no division happens per packet there.
//!
//! Only misses pay for this check: a packet that hits a flow never looks
//! at a bucket.

use crate::{InPort, PortNo};

/// The operator's settings. Defaults: 5,000 upcalls/s per port with a burst
/// of 1,000, 20,000/s with a burst of 4,000 for the tunnel, and up to 64
/// borrowed misses waiting past those budgets.
///
/// Why these: a host here simulates a miss in 10-30 µs, so 5,000/s is at
/// most a sixth of a core per flooding VM; a VM opening connections that
/// each need a simulation (stateful rules) still gets 5,000 new
/// connections per second sustained and 1,000 at once, and a megaflow
/// carries the rest of its traffic without upcalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpcallLimits {
    /// Upcalls per second per local port; 0 = unlimited.
    pub port_rate: u32,
    /// Upcalls a port may make at once after being quiet.
    pub port_burst: u32,
    /// Upcalls per second from the tunnel (all remote hosts together).
    pub tunnel_rate: u32,
    pub tunnel_burst: u32,
    /// Misses past their budget that may wait for the agent at once (see
    /// the module docs); 0 = budgets are hard limits.
    pub spare_depth: u32,
}

impl Default for UpcallLimits {
    fn default() -> Self {
        UpcallLimits {
            port_rate: 5_000,
            port_burst: 1_000,
            tunnel_rate: 20_000,
            tunnel_burst: 4_000,
            spare_depth: 64,
        }
    }
}

/// What a port's budget says of one more miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Within the port's own budget.
    Own,
    /// Past it, lent because the agent has room.
    Borrowed,
    /// Past it, and no room: drop it.
    Limited,
}

/// Bytes one small upcall record takes in the eBPF spare ring: the ring's
/// 8-byte header, `struct mdp_upcall` (40) and the 2048-byte frame room.
pub const SPARE_RECORD_BYTES: u64 = 8 + 40 + 2048;

/// How many small records the eBPF spare ring (`MDP_SPARE_RING_BYTES`,
/// 1 MiB) holds; `spare_depth` is capped below it.
pub const SPARE_RING_RECORDS: u64 = (1 << 20) / SPARE_RECORD_BYTES;

impl UpcallLimits {
    /// No limit anywhere (tests that count every miss).
    pub const UNLIMITED: UpcallLimits = UpcallLimits {
        port_rate: 0,
        port_burst: 0,
        tunnel_rate: 0,
        tunnel_burst: 0,
        spare_depth: 0,
    };

    /// `(port cost, port cap, tunnel cost, tunnel cap)` in nanoseconds of
    /// credit; a cost of 0 = unlimited.
    pub fn costs(&self) -> [u64; 4] {
        let cost = |rate: u32| if rate == 0 { 0 } else { 1_000_000_000 / u64::from(rate) };
        let cap = |rate: u32, burst: u32| cost(rate) * u64::from(burst.max(1));
        [
            cost(self.port_rate),
            cap(self.port_rate, self.port_burst),
            cost(self.tunnel_rate),
            cap(self.tunnel_rate, self.tunnel_burst),
        ]
    }

    /// `struct mdp_limit_config` of the eBPF program: [`costs`](Self::costs)
    /// and the spare ring's fill below which a miss may borrow, in bytes.
    pub fn kernel_config(&self) -> [u64; 5] {
        let [pc, pcap, tc, tcap] = self.costs();
        let depth = u64::from(self.spare_depth).min(SPARE_RING_RECORDS - 1);
        [pc, pcap, tc, tcap, depth * SPARE_RECORD_BYTES]
    }

    /// [`kernel_config`](Self::kernel_config) for an agent that simulates
    /// on miss workers (`workers`) or inline. With workers nothing is lent:
    /// the datapath thread hands every miss it reads to the workers' queues
    /// at once, so the spare ring would drain as fast as a flood fills it
    /// and lent misses would queue in front of the neighbours' (and fill
    /// the queues, whose overflow drops anyone's miss).
    pub fn kernel_config_for(&self, workers: bool) -> [u64; 5] {
        let mut k = self.kernel_config();
        if workers {
            k[4] = 0;
        }
        k
    }
}

/// One bucket: accrued credit and when it was last updated.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    credit_ns: u64,
    last_ns: u64,
    primed: bool,
}

impl Bucket {
    /// Takes one upcall's cost if the credit covers it.
    #[inline]
    fn take(&mut self, cost: u64, cap: u64, now_ns: u64) -> bool {
        if cost == 0 {
            return true;
        }
        // A new bucket starts full: a port's first burst is allowed.
        let credit = if self.primed {
            self.credit_ns.saturating_add(now_ns.saturating_sub(self.last_ns)).min(cap)
        } else {
            cap
        };
        self.primed = true;
        self.last_ns = self.last_ns.max(now_ns);
        if credit < cost {
            self.credit_ns = credit;
            return false;
        }
        self.credit_ns = credit - cost;
        true
    }
}

/// The buckets of one datapath (the userspace providers'; the eBPF
/// program keeps its own per CPU).
#[derive(Debug, Clone)]
pub struct UpcallLimiter {
    /// [`UpcallLimits::costs`] of the settings: all the buckets need.
    costs: [u64; 4],
    spare_depth: u32,
    room: bool,
    ports: Vec<Bucket>,
    tunnel: Bucket,
}

impl Default for UpcallLimiter {
    fn default() -> Self {
        UpcallLimiter::new(UpcallLimits::default())
    }
}

impl UpcallLimiter {
    pub fn new(limits: UpcallLimits) -> Self {
        UpcallLimiter {
            costs: limits.costs(),
            spare_depth: limits.spare_depth,
            room: false,
            ports: Vec::new(),
            tunnel: Bucket::default(),
        }
    }

    /// Changes the settings; buckets keep their credit, capped to the new burst.
    pub fn set_limits(&mut self, limits: UpcallLimits) {
        self.costs = limits.costs();
        self.spare_depth = limits.spare_depth;
    }

    /// Whether a miss from `in_port` at `now_ns` may go up.
    #[inline]
    pub fn allow(&mut self, in_port: InPort, now_ns: u64) -> bool {
        let [pc, pcap, tc, tcap] = self.costs;
        match in_port {
            InPort::Tunnel(_) => self.tunnel.take(tc, tcap, now_ns),
            InPort::Port(p) => {
                if pc == 0 {
                    return true;
                }
                let i = p as usize;
                if i >= self.ports.len() {
                    self.ports.resize(i + 1, Bucket::default());
                }
                self.ports[i].take(pc, pcap, now_ns)
            }
        }
    }

    /// Whether the miss path can take borrowed misses now without holding
    /// up the others (initially not: budgets are hard limits).
    pub fn set_room(&mut self, room: bool) {
        self.room = room;
    }

    /// [`allow`](Self::allow), lending past the budget while there is room
    /// ([`set_room`](Self::set_room)) and the settings lend at all.
    #[inline]
    pub fn budget(&mut self, in_port: InPort, now_ns: u64) -> Budget {
        if self.allow(in_port, now_ns) {
            Budget::Own
        } else if self.room && self.spare_depth > 0 {
            Budget::Borrowed
        } else {
            Budget::Limited
        }
    }

    /// Forgets a port's bucket (the number may be reused by another port).
    pub fn reset_port(&mut self, port: PortNo) {
        if let Some(b) = self.ports.get_mut(port as usize) {
            *b = Bucket::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_port_gets_its_burst_then_its_rate() {
        let mut l = UpcallLimiter::new(UpcallLimits {
            port_rate: 1000,
            port_burst: 10,
            ..UpcallLimits::UNLIMITED
        });
        let t0 = 5_000 * MS;
        let burst = (0..100).filter(|_| l.allow(InPort::Port(1), t0)).count();
        assert_eq!(burst, 10, "a quiet port may make its burst at once");
        // 1000/s = one per ms: 50 ms later, 50 more (of 100 tried).
        let later = (0..100).filter(|_| l.allow(InPort::Port(1), t0 + 50 * MS)).count();
        assert_eq!(later, 10, "credit is capped at the burst");
        let mut got = 0;
        for ms in 51..=150 {
            got += (0..5).filter(|_| l.allow(InPort::Port(1), t0 + ms * MS)).count();
        }
        assert_eq!(got, 100, "one per millisecond sustained at 1000/s");
    }

    #[test]
    fn ports_do_not_share_a_bucket_and_the_tunnel_has_its_own() {
        let mut l = UpcallLimiter::new(UpcallLimits {
            port_rate: 100,
            port_burst: 2,
            tunnel_rate: 100,
            tunnel_burst: 3,
            spare_depth: 0,
        });
        let t = 1_000 * MS;
        assert_eq!((0..10).filter(|_| l.allow(InPort::Port(3), t)).count(), 2);
        assert_eq!(
            (0..10).filter(|_| l.allow(InPort::Port(4), t)).count(),
            2,
            "a flood on 3 costs 4 nothing"
        );
        assert_eq!((0..10).filter(|_| l.allow(InPort::Tunnel(7), t)).count(), 3);
        assert_eq!(
            (0..10).filter(|_| l.allow(InPort::Tunnel(8), t)).count(),
            0,
            "one bucket for every VNI"
        );
        l.reset_port(3);
        assert_eq!(
            (0..10).filter(|_| l.allow(InPort::Port(3), t)).count(),
            2,
            "a reused number starts full"
        );
    }

    #[test]
    fn rate_zero_is_unlimited_and_a_clock_going_back_grants_nothing() {
        let mut l = UpcallLimiter::new(UpcallLimits::UNLIMITED);
        assert!((0..10_000).all(|_| l.allow(InPort::Port(1), 0)));
        let mut l = UpcallLimiter::new(UpcallLimits {
            port_rate: 10,
            port_burst: 1,
            ..UpcallLimits::UNLIMITED
        });
        assert!(l.allow(InPort::Port(1), 10_000 * MS));
        assert!(!l.allow(InPort::Port(1), MS), "an earlier time adds no credit");
        assert!(l.allow(InPort::Port(1), 10_100 * MS));
    }

    #[test]
    fn past_its_budget_a_miss_borrows_only_when_there_is_room() {
        let mut l = UpcallLimiter::new(UpcallLimits {
            port_rate: 1000,
            port_burst: 2,
            spare_depth: 8,
            ..UpcallLimits::UNLIMITED
        });
        let t = 1_000 * MS;
        assert_eq!(l.budget(InPort::Port(1), t), Budget::Own);
        assert_eq!(l.budget(InPort::Port(1), t), Budget::Own);
        assert_eq!(l.budget(InPort::Port(1), t), Budget::Limited, "no lending until room is said");
        l.set_room(true);
        let t = t + MS / 2;
        let got: Vec<Budget> = (0..4).map(|_| l.budget(InPort::Port(1), t)).collect();
        assert_eq!(got, [Budget::Borrowed; 4]);
        l.set_room(false);
        assert_eq!(l.budget(InPort::Port(1), t), Budget::Limited, "no room, no loan");
        // A loan takes no credit: the port's own budget refills as before.
        assert_eq!(l.budget(InPort::Port(1), t + MS), Budget::Own);
        // Settings that lend nothing: past the budget is dropped, room or not.
        l.set_room(true);
        l.set_limits(UpcallLimits { port_rate: 1000, port_burst: 2, ..UpcallLimits::UNLIMITED });
        let got: Vec<Budget> = (0..3).map(|_| l.budget(InPort::Port(1), t + MS)).collect();
        assert_eq!(got, [Budget::Limited; 3], "spare_depth 0 lends nothing");
    }

    #[test]
    fn the_kernel_lends_a_bounded_part_of_its_spare_ring() {
        let k = UpcallLimits::default().kernel_config();
        assert_eq!(k[..4], UpcallLimits::default().costs());
        assert_eq!(k[4], 64 * SPARE_RECORD_BYTES);
        let huge = UpcallLimits { spare_depth: u32::MAX, ..UpcallLimits::default() };
        assert!(huge.kernel_config()[4] < 1 << 20, "capped below the ring's size");
        assert_eq!(UpcallLimits::UNLIMITED.kernel_config()[4], 0);
        let d = UpcallLimits::default();
        assert_eq!(d.kernel_config_for(false), d.kernel_config());
        assert_eq!(d.kernel_config_for(true)[..4], d.costs(), "budgets kept with workers");
        assert_eq!(d.kernel_config_for(true)[4], 0, "nothing lent to miss workers' queues");
    }
}
