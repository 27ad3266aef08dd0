//! The load balancer of a router, compiled for the simulation
//! (`engine::lb`): its VIPs with their pools' members, and the set of
//! backend addresses whose return traffic the router reverse-translates.
//!
//! A router's load balancer is the one its `loadBalancerId` names, or else
//! the one whose `routerId` names the router. A load balancer that is
//! administratively down is not compiled at all: the router then behaves as
//! if it had none, as in MidoNet (packets to a VIP are routed, and usually
//! dropped for lack of a route).

use std::net::Ipv4Addr;

use midonet_model as model;
use model::{LoadBalancerId, PoolId, PoolMemberId, RouterId, Topology, VipId};

use super::{hash64, uuid_hash, Map, Set};

/// One backend of a pool.
#[derive(Clone, Debug)]
pub(crate) struct SMember {
    pub id: PoolMemberId,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
    /// Takes new connections: admin up, weight above zero, and not marked
    /// down by its health check.
    pub active: bool,
    /// Rendezvous-hashing identity (from the id: stable across restarts
    /// and hosts, so every agent picks the same member for a key).
    pub hrw: u64,
}

/// A VIP and the pool behind it.
#[derive(Clone, Debug)]
pub(crate) struct SVip {
    pub id: VipId,
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `sessionPersistence: SOURCE_IP`.
    pub sticky: bool,
    pub pool: PoolId,
    /// The pool is admin up: new connections may be balanced.
    pub pool_up: bool,
    pub members: Vec<SMember>,
}

impl SVip {
    /// The member `(ip, port)` of this VIP's pool, if it still is one.
    pub fn member(&self, ip: Ipv4Addr, port: u16) -> Option<&SMember> {
        self.members.iter().find(|m| m.ip == ip && m.port == port)
    }
}

/// A router's load balancer.
#[derive(Clone, Debug)]
pub(crate) struct SLb {
    pub id: LoadBalancerId,
    /// Admin-up VIPs (TCP only, as MidoNet).
    pub vips: Vec<SVip>,
    /// The addresses of every VIP, admin up or not (UDP to a VIP's
    /// address and port is dropped, as MidoNet), and their IPs alone (the
    /// first test on every packet through the router).
    pub vip_addrs: Set<(Ipv4Addr, u16)>,
    pub vip_ips: Set<Ipv4Addr>,
    /// Every member address and port: only return traffic from these is
    /// looked up for reverse translation; and their IPs alone.
    pub backends: Set<(Ipv4Addr, u16)>,
    pub backend_ips: Set<Ipv4Addr>,
}

impl SLb {
    /// The VIP for TCP to `ip:port`.
    pub fn vip(&self, ip: Ipv4Addr, port: u16) -> Option<&SVip> {
        self.vips.iter().find(|v| v.ip == ip && v.port == port)
    }
}

/// Whether a member's status (written by health checks) lets it take new
/// connections. Anything but a "down" word counts as up, so members of a
/// pool without a health monitor (`ACTIVE`, `NO_MONITOR`) are used.
pub fn status_up(status: &str) -> bool {
    !matches!(status.to_ascii_uppercase().as_str(), "DOWN" | "INACTIVE")
}

/// The load balancer of router `r`, if it has one that is admin up.
pub(crate) fn build(t: &Topology, r: &model::Router) -> Option<SLb> {
    let lb = r
        .load_balancer_id
        .and_then(|id| t.load_balancers.get(&id))
        .or_else(|| t.load_balancers.values().find(|l| l.router_id == Some(r.id)))?;
    if !lb.admin_state_up {
        return None;
    }
    let mut s = SLb {
        id: lb.id,
        vips: Vec::new(),
        vip_addrs: Set::default(),
        vip_ips: Set::default(),
        backends: Set::default(),
        backend_ips: Set::default(),
    };
    for v in t.vips.values().filter(|v| v.load_balancer_id == lb.id) {
        s.vip_addrs.insert((v.address, v.protocol_port));
        s.vip_ips.insert(v.address);
        let Some(pool) = t.pools.get(&v.pool_id) else { continue };
        let mut members: Vec<SMember> = t
            .pool_members
            .values()
            .filter(|m| m.pool_id == pool.id)
            .map(|m| SMember {
                id: m.id,
                ip: m.address,
                port: m.protocol_port,
                weight: m.weight,
                active: m.admin_state_up && m.weight > 0 && status_up(&m.status),
                hrw: uuid_hash(m.id.uuid()),
            })
            .collect();
        members.sort_by_key(|m| m.id);
        for m in &members {
            s.backends.insert((m.ip, m.port));
            s.backend_ips.insert(m.ip);
        }
        if !v.admin_state_up {
            continue;
        }
        s.vips.push(SVip {
            id: v.id,
            ip: v.address,
            port: v.protocol_port,
            sticky: v
                .session_persistence
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case("SOURCE_IP")),
            pool: pool.id,
            pool_up: pool.admin_state_up,
            members,
        });
    }
    s.vips.sort_by_key(|v| v.id);
    Some(s)
}

/// The pools' load balancers and the load balancers' routers, for
/// invalidation (`tag::tags_for_change`).
#[derive(Clone, Debug, Default)]
pub(crate) struct LbIndex {
    pub pool_lb: Map<PoolId, LoadBalancerId>,
    pub lb_router: Map<LoadBalancerId, RouterId>,
}

impl LbIndex {
    pub fn build(t: &Topology) -> LbIndex {
        let mut ix = LbIndex::default();
        for p in t.pools.values() {
            ix.pool_lb.insert(p.id, p.load_balancer_id);
        }
        for r in t.routers.values() {
            if let Some(lb) = r.load_balancer_id {
                ix.lb_router.insert(lb, r.id);
            }
        }
        for lb in t.load_balancers.values() {
            if let Some(r) = lb.router_id {
                ix.lb_router.entry(lb.id).or_insert(r);
            }
        }
        ix
    }
}

/// Weighted rendezvous hashing: the active member with the highest score
/// `weight / -ln(u)`, where `u` in (0, 1) is a hash of the key and the
/// member. Adding or removing a member moves only the keys that go to or
/// come from it, and each member gets keys in proportion to its weight.
/// `skip` members are not candidates (a pick whose return key collided).
pub(crate) fn pick<'m>(
    members: &'m [SMember],
    key: u64,
    skip: &[PoolMemberId],
) -> Option<&'m SMember> {
    let mut best: Option<(f64, &SMember)> = None;
    for m in members.iter().filter(|m| m.active && !skip.contains(&m.id)) {
        let h = hash64(key, m.hrw);
        // 53 random bits, never 0 or 1.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(m.weight) / -u.ln();
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, m));
        }
    }
    best.map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(weights: &[u32]) -> Vec<SMember> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| SMember {
                id: PoolMemberId::from(uuid::Uuid::from_u128(i as u128 + 1)),
                ip: Ipv4Addr::new(10, 0, 0, i as u8 + 1),
                port: 80,
                weight: w,
                active: true,
                hrw: uuid_hash(uuid::Uuid::from_u128(i as u128 + 1)),
            })
            .collect()
    }

    #[test]
    fn picks_follow_the_weights() {
        let ms = members(&[1, 2, 1]);
        let mut n = [0u32; 3];
        for k in 0..40_000u64 {
            let m = pick(&ms, hash64(k, 7), &[]).expect("a member");
            n[m.ip.octets()[3] as usize - 1] += 1;
        }
        let share: Vec<f64> = n.iter().map(|&c| f64::from(c) / 40_000.0).collect();
        assert!((share[0] - 0.25).abs() < 0.02, "{share:?}");
        assert!((share[1] - 0.50).abs() < 0.02, "{share:?}");
        assert!((share[2] - 0.25).abs() < 0.02, "{share:?}");
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let ms = members(&[1, 1, 1, 1]);
        let mut fewer = ms.clone();
        fewer[2].active = false;
        let gone = fewer[2].id;
        for k in 0..10_000u64 {
            let key = hash64(k, 1);
            let before = pick(&ms, key, &[]).expect("a member").id;
            let after = pick(&fewer, key, &[]).expect("a member").id;
            if before != gone {
                assert_eq!(before, after, "key {k} moved off a member that stayed");
            }
        }
    }

    #[test]
    fn no_active_member_picks_none() {
        let mut ms = members(&[1, 1]);
        for m in &mut ms {
            m.active = false;
        }
        assert!(pick(&ms, 1, &[]).is_none());
        let ms = members(&[1, 1]);
        let all: Vec<_> = ms.iter().map(|m| m.id).collect();
        assert!(pick(&ms, 1, &all).is_none());
    }

    #[test]
    fn status_words() {
        for s in ["ACTIVE", "UP", "NO_MONITOR", "active"] {
            assert!(status_up(s), "{s}");
        }
        for s in ["DOWN", "INACTIVE", "down"] {
            assert!(!status_up(s), "{s}");
        }
    }
}
