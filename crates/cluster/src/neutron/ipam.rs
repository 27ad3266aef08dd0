//! Address arithmetic for subnets: CIDRs, default gateways and allocation
//! pools, picking a free address, MAC addresses, and carving subnets out of
//! a subnet pool's prefixes. IPv4 and IPv6 alike (as `u128`), pure.
//!
//! # Prefix sets (subnet pools)
//!
//! A set of prefixes is kept as Neutron keeps it (netaddr's `IPSet`,
//! compacted): sorted address ranges, overlapping and adjacent ones merged,
//! each range written as the fewest aligned CIDRs that cover it exactly
//! (`10.0.0.0/25` + `10.0.0.128/25` is `10.0.0.0/24`). The free space of a
//! pool is its prefixes less the CIDRs of its subnets, in the same form;
//! an allocation takes the front of the first free block that is large
//! enough, trying the smallest blocks first (best fit: big blocks stay
//! whole), as Neutron's `SubnetAllocator._allocate_any_subnet` does.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::types::Pool;

/// A network prefix with its host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub net: IpAddr,
    pub len: u8,
}

fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

impl Cidr {
    /// Parses `10.0.0.0/24` or `2001:db8::/64`; host bits must be clear,
    /// as Neutron requires.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) =
            s.trim().split_once('/').ok_or_else(|| format!("'{s}' is not a valid IP subnet"))?;
        let net: IpAddr = a.parse().map_err(|_| format!("'{s}' is not a valid IP subnet"))?;
        let len: u8 = l.parse().map_err(|_| format!("'{s}' is not a valid IP subnet"))?;
        if len > bits(net) {
            return Err(format!("'{s}' is not a valid IP subnet"));
        }
        let c = Cidr { net, len };
        let norm = c.first();
        if norm != net {
            return Err(format!(
                "'{s}' isn't a recognized IP subnet cidr, '{norm}/{len}' is recommended"
            ));
        }
        Ok(c)
    }
    pub fn is_v4(&self) -> bool {
        self.net.is_ipv4()
    }
    pub fn version(&self) -> u8 {
        if self.is_v4() {
            4
        } else {
            6
        }
    }
    fn mask(&self) -> u128 {
        let b = u32::from(bits(self.net));
        let host = b - u32::from(self.len);
        let all = if b == 128 { u128::MAX } else { (1u128 << b) - 1 };
        if host == 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }
    pub fn first(&self) -> IpAddr {
        from_u128(to_u128(self.net) & self.mask(), self.is_v4())
    }
    pub fn last(&self) -> IpAddr {
        let b = u32::from(bits(self.net));
        let all = if b == 128 { u128::MAX } else { (1u128 << b) - 1 };
        from_u128((to_u128(self.net) & self.mask()) | (all & !self.mask()), self.is_v4())
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_v4() && (to_u128(ip) & self.mask()) == to_u128(self.first())
    }
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.is_v4() == other.is_v4() && (self.contains(other.net) || other.contains(self.net))
    }
    /// The lowest and highest addresses a host may have: IPv4 excludes the
    /// network and broadcast addresses (except /31 and /32), IPv6 only the
    /// subnet-router anycast address.
    pub fn host_range(&self) -> Option<(u128, u128)> {
        let (lo, hi) = (to_u128(self.first()), to_u128(self.last()));
        let (lo, hi) = if self.is_v4() && self.len < 31 {
            (lo + 1, hi - 1)
        } else if self.is_v4() {
            (lo, hi)
        } else {
            (lo + 1, hi)
        };
        (lo <= hi).then_some((lo, hi))
    }
    /// Whether `ip` may be given to a port (inside, not network/broadcast).
    pub fn is_host(&self, ip: IpAddr) -> bool {
        self.contains(ip)
            && self.host_range().is_some_and(|(lo, hi)| (lo..=hi).contains(&to_u128(ip)))
    }
    /// Neutron's default gateway: the first host address.
    pub fn default_gateway(&self) -> Option<IpAddr> {
        self.host_range().map(|(lo, _)| from_u128(lo, self.is_v4()))
    }
    /// Neutron's default pools: every host address but the gateway.
    pub fn default_pools(&self, gateway: Option<IpAddr>) -> Vec<Pool> {
        let Some((lo, hi)) = self.host_range() else {
            return Vec::new();
        };
        let mut ranges = vec![(lo, hi)];
        if let Some(g) = gateway.filter(|g| self.contains(*g)).map(to_u128) {
            ranges = ranges
                .into_iter()
                .flat_map(|(s, e)| {
                    if g < s || g > e {
                        vec![(s, e)]
                    } else {
                        let mut v = Vec::new();
                        if g > s {
                            v.push((s, g - 1));
                        }
                        if g < e {
                            v.push((g + 1, e));
                        }
                        v
                    }
                })
                .collect();
        }
        ranges
            .into_iter()
            .map(|(s, e)| Pool {
                start: from_u128(s, self.is_v4()).to_string(),
                end: from_u128(e, self.is_v4()).to_string(),
            })
            .collect()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// A pool as two addresses of the subnet's family.
pub fn pool_bounds(cidr: &Cidr, p: &Pool) -> Result<(u128, u128), String> {
    let parse = |s: &str| -> Result<IpAddr, String> {
        s.trim().parse().map_err(|_| format!("'{s}' is not a valid IP address"))
    };
    let (s, e) = (parse(&p.start)?, parse(&p.end)?);
    if !cidr.contains(s) || !cidr.contains(e) {
        return Err(format!(
            "The allocation pool {}-{} spans beyond the subnet cidr {cidr}",
            p.start, p.end
        ));
    }
    if !cidr.is_host(s) || !cidr.is_host(e) {
        return Err(format!(
            "The allocation pool {}-{} includes the network or broadcast address of {cidr}",
            p.start, p.end
        ));
    }
    let (s, e) = (to_u128(s), to_u128(e));
    if s > e {
        return Err(format!("The allocation pool {}-{} starts after it ends", p.start, p.end));
    }
    Ok((s, e))
}

/// Checks explicit pools: inside the subnet, not overlapping, not holding
/// the gateway.
pub fn check_pools(cidr: &Cidr, pools: &[Pool], gateway: Option<IpAddr>) -> Result<(), String> {
    let mut seen: Vec<(u128, u128)> = Vec::new();
    for p in pools {
        let (s, e) = pool_bounds(cidr, p)?;
        if let Some(o) = seen.iter().find(|(a, b)| s <= *b && *a <= e) {
            let _ = o;
            return Err(format!("Found overlapping allocation pools: {}-{}", p.start, p.end));
        }
        if let Some(g) = gateway.map(to_u128) {
            if (s..=e).contains(&g) {
                return Err(format!(
                    "Gateway ip {} conflicts with allocation pool {}-{}",
                    from_u128(g, cidr.is_v4()),
                    p.start,
                    p.end
                ));
            }
        }
        seen.push((s, e));
    }
    Ok(())
}

/// How many of a pool's free addresses a random pick chooses among
/// (Neutron's `MAX_WIN`).
pub const PICK_WINDOW: usize = 1000;

/// How an address is picked from a pool's free ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The first free one (Neutron's `PreferNextAddressRequest`: DHCP
    /// ports).
    First,
    /// One at random among the first [`PICK_WINDOW`] free ones, as
    /// Neutron's IPAM driver does: concurrent creates then rarely want the
    /// same address.
    Random,
}

/// An address of the first pool that has one not in `used`.
pub fn allocate(cidr: &Cidr, pools: &[Pool], used: &HashSet<IpAddr>, pick: Pick) -> Option<IpAddr> {
    let want = if pick == Pick::First { 1 } else { PICK_WINDOW };
    for p in pools {
        let Ok((s, e)) = pool_bounds(cidr, p) else { continue };
        let mut free = Vec::new();
        let mut v = s;
        loop {
            let ip = from_u128(v, cidr.is_v4());
            if !used.contains(&ip) {
                free.push(ip);
                if free.len() == want {
                    break;
                }
            }
            if v == e {
                break;
            }
            v += 1;
        }
        if !free.is_empty() {
            return Some(free[rand::random::<u32>() as usize % free.len()]);
        }
    }
    None
}

/// A CIDR as its first and last addresses.
fn range_of(c: &Cidr) -> (u128, u128) {
    (to_u128(c.first()), to_u128(c.last()))
}

/// Sorted ranges, overlapping and adjacent ones merged.
fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if last.1.checked_add(1).is_none_or(|next| lo <= next) => {
                last.1 = last.1.max(hi);
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The fewest aligned CIDRs that cover `lo..=hi` exactly, in address order.
fn range_to_cidrs(lo: u128, hi: u128, v4: bool) -> Vec<Cidr> {
    let bits: u32 = if v4 { 32 } else { 128 };
    // The last address of the block of 2^host addresses at `start`
    // (`start` is aligned to it, so this cannot overflow).
    let end = |start: u128, host: u32| {
        if host >= 128 {
            u128::MAX
        } else {
            start + ((1u128 << host) - 1)
        }
    };
    let mut out = Vec::new();
    let mut start = lo;
    loop {
        let mut host = start.trailing_zeros().min(bits);
        while host > 0 && end(start, host) > hi {
            host -= 1;
        }
        out.push(Cidr { net: from_u128(start, v4), len: (bits - host) as u8 });
        let e = end(start, host);
        if e >= hi {
            return out;
        }
        start = e + 1;
    }
}

/// A set of prefixes (one IP version) in Neutron's compacted form: see
/// the module docs.
pub fn compact(prefixes: &[Cidr]) -> Vec<Cidr> {
    let v4 = prefixes.first().is_none_or(Cidr::is_v4);
    merge(prefixes.iter().map(range_of).collect())
        .into_iter()
        .flat_map(|(lo, hi)| range_to_cidrs(lo, hi, v4))
        .collect()
}

/// Whether every address of `inner` is in `outer`.
pub fn covers(outer: &[Cidr], inner: &[Cidr]) -> bool {
    let outer = merge(outer.iter().map(range_of).collect());
    inner.iter().map(range_of).all(|(lo, hi)| outer.iter().any(|(a, b)| *a <= lo && hi <= *b))
}

/// The free blocks of a pool: `prefixes` less `used`, compacted, smallest
/// blocks (longest prefixes) first and in address order among equals.
pub fn free_blocks(prefixes: &[Cidr], used: &[Cidr]) -> Vec<Cidr> {
    let v4 = prefixes.first().is_none_or(Cidr::is_v4);
    let used = merge(used.iter().map(range_of).collect());
    let mut free = Vec::new();
    for (lo, hi) in merge(prefixes.iter().map(range_of).collect()) {
        let mut cur = Some(lo);
        for &(ulo, uhi) in used.iter().filter(|(a, b)| *b >= lo && *a <= hi) {
            let Some(c) = cur else { break };
            if ulo > c {
                free.push((c, ulo - 1));
            }
            cur = uhi.checked_add(1);
        }
        if let Some(c) = cur.filter(|c| *c <= hi) {
            free.push((c, hi));
        }
    }
    let mut blocks: Vec<Cidr> =
        free.into_iter().flat_map(|(lo, hi)| range_to_cidrs(lo, hi, v4)).collect();
    // Stable: address order is kept among blocks of one length.
    blocks.sort_by_key(|b| std::cmp::Reverse(b.len));
    blocks
}

/// The first free CIDR of length `len` in the pool, if there is room.
pub fn allocate_prefix(prefixes: &[Cidr], used: &[Cidr], len: u8) -> Option<Cidr> {
    free_blocks(prefixes, used).into_iter().find(|b| b.len <= len).map(|b| Cidr { net: b.net, len })
}

/// Whether `want` lies in the pool's free space (inside one free block,
/// as Neutron's `_allocate_specific_subnet` asks).
pub fn is_free(prefixes: &[Cidr], used: &[Cidr], want: &Cidr) -> bool {
    free_blocks(prefixes, used).iter().any(|b| b.len <= want.len && b.contains(want.net))
}

/// A MAC address in Neutron's default base `fa:16:3e:xx:xx:xx`.
pub fn random_mac() -> String {
    let b: [u8; 3] = rand::random();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn v4_defaults_are_neutrons() {
        let c = Cidr::parse("10.0.0.0/24").expect("cidr");
        assert_eq!(c.default_gateway(), Some(ip("10.0.0.1")));
        let pools = c.default_pools(c.default_gateway());
        assert_eq!(pools, vec![Pool { start: "10.0.0.2".into(), end: "10.0.0.254".into() }]);
        // A gateway in the middle splits the pool.
        let pools = c.default_pools(Some(ip("10.0.0.100")));
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].end, "10.0.0.99");
        assert_eq!(pools[1].start, "10.0.0.101");
        assert!(!c.is_host(ip("10.0.0.255")) && !c.is_host(ip("10.0.0.0")));
        assert!(c.is_host(ip("10.0.0.254")));
    }

    #[test]
    fn v6_defaults_and_containment() {
        let c = Cidr::parse("2001:db8::/64").expect("cidr");
        assert_eq!(c.default_gateway(), Some(ip("2001:db8::1")));
        let pools = c.default_pools(c.default_gateway());
        assert_eq!(pools[0].start, "2001:db8::2");
        assert_eq!(pools[0].end, "2001:db8::ffff:ffff:ffff:ffff");
        assert!(c.contains(ip("2001:db8::5")) && !c.contains(ip("10.0.0.1")));
    }

    #[test]
    fn bad_cidrs_are_refused_with_a_hint() {
        assert!(Cidr::parse("10.0.0.5/24").expect_err("host bits").contains("10.0.0.0/24"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("bogus").is_err());
        let a = Cidr::parse("10.0.0.0/16").expect("a");
        assert!(a.overlaps(&Cidr::parse("10.0.5.0/24").expect("b")));
        assert!(!a.overlaps(&Cidr::parse("10.1.0.0/24").expect("c")));
    }

    #[test]
    fn pools_are_checked_and_allocated_in_order() {
        let c = Cidr::parse("192.168.1.0/29").expect("cidr");
        let gw = Some(ip("192.168.1.1"));
        let pools = c.default_pools(gw);
        check_pools(&c, &pools, gw).expect("defaults are valid");
        let bad = vec![Pool { start: "192.168.1.1".into(), end: "192.168.1.3".into() }];
        assert!(check_pools(&c, &bad, gw).expect_err("gw").contains("Gateway"));
        let outside = vec![Pool { start: "192.168.1.2".into(), end: "192.168.2.3".into() }];
        assert!(check_pools(&c, &outside, gw).is_err());
        let mut used = HashSet::new();
        for want in ["192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5", "192.168.1.6"] {
            let got = allocate(&c, &pools, &used, Pick::First).expect("free");
            assert_eq!(got, ip(want));
            used.insert(got);
        }
        assert_eq!(allocate(&c, &pools, &used, Pick::First), None, "exhausted");
        assert_eq!(allocate(&c, &pools, &used, Pick::Random), None, "exhausted");
    }

    #[test]
    fn random_picks_stay_in_the_first_window_of_free_addresses_and_never_reuse() {
        let c = Cidr::parse("10.0.0.0/16").expect("cidr");
        let gw = Some(ip("10.0.0.1"));
        let pools = c.default_pools(gw);
        let mut used = HashSet::new();
        used.insert(ip("10.0.0.1"));
        for _ in 0..3000 {
            let got = allocate(&c, &pools, &used, Pick::Random).expect("free");
            assert!(used.insert(got), "{got} handed out twice");
            // At most PICK_WINDOW free addresses are below any pick.
            let below = to_u128(got) - to_u128(ip("10.0.0.2"));
            let used_below = used.iter().filter(|u| to_u128(**u) < to_u128(got)).count() as u128;
            assert!(below - (used_below - 1) < PICK_WINDOW as u128, "{got} is past the window");
        }
        // A small pool is picked from whole, and runs out exactly.
        let small = Cidr::parse("10.1.0.0/29").expect("cidr");
        let pools = small.default_pools(Some(ip("10.1.0.1")));
        let mut used = HashSet::new();
        for _ in 0..5 {
            assert!(used.insert(allocate(&small, &pools, &used, Pick::Random).expect("free")));
        }
        assert_eq!(allocate(&small, &pools, &used, Pick::Random), None);
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).expect("cidr")).collect()
    }

    fn shown(list: &[Cidr]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn prefix_sets_are_compacted_as_neutron_does() {
        let c = compact(&cidrs(&["10.0.0.128/25", "10.0.0.0/25", "10.0.0.64/26", "10.1.0.0/16"]));
        assert_eq!(shown(&c), ["10.0.0.0/24", "10.1.0.0/16"]);
        // Adjacent but not one aligned block: two CIDRs.
        let c = compact(&cidrs(&["10.0.1.0/24", "10.0.2.0/24"]));
        assert_eq!(shown(&c), ["10.0.1.0/24", "10.0.2.0/24"]);
        assert_eq!(shown(&compact(&cidrs(&["0.0.0.0/1", "128.0.0.0/1"]))), ["0.0.0.0/0"]);
        assert_eq!(shown(&compact(&cidrs(&["::/1", "8000::/1"]))), ["::/0"]);
        assert!(covers(&cidrs(&["10.0.0.0/8"]), &cidrs(&["10.0.0.0/24", "10.9.0.0/16"])));
        assert!(covers(&cidrs(&["10.0.0.0/25", "10.0.0.128/25"]), &cidrs(&["10.0.0.0/24"])));
        assert!(!covers(&cidrs(&["10.0.0.0/24"]), &cidrs(&["10.0.0.0/23"])));
    }

    #[test]
    fn pool_allocation_takes_the_first_free_block_that_fits_smallest_first() {
        let pool = cidrs(&["10.0.0.0/16", "192.168.0.0/24"]);
        let mut used = Vec::new();
        // The /24 block is the best fit for a /26.
        for want in ["192.168.0.0/26", "192.168.0.64/26", "192.168.0.128/26", "192.168.0.192/26"] {
            let got = allocate_prefix(&pool, &used, 26).expect("room");
            assert_eq!(got.to_string(), want);
            used.push(got);
        }
        let got = allocate_prefix(&pool, &used, 24).expect("room");
        assert_eq!(got.to_string(), "10.0.0.0/24");
        used.push(got);
        // The hole left in 10.0.0.0/16 is used before bigger blocks.
        assert_eq!(allocate_prefix(&pool, &used, 25).expect("room").to_string(), "10.0.1.0/25");
        assert_eq!(allocate_prefix(&pool, &used, 16), None, "no /16 is free any more");
        assert_eq!(allocate_prefix(&pool, &used, 8), None, "larger than the pool");
        assert!(is_free(&pool, &used, &Cidr::parse("10.0.128.0/17").expect("cidr")));
        assert!(!is_free(&pool, &used, &Cidr::parse("10.0.0.0/25").expect("cidr")), "taken");
        assert!(!is_free(&pool, &used, &Cidr::parse("10.1.0.0/24").expect("cidr")), "outside");
        assert!(!is_free(&pool, &used, &Cidr::parse("10.0.0.0/15").expect("cidr")), "too big");
    }

    #[test]
    fn pool_free_space_is_exact_at_the_edges() {
        let pool = cidrs(&["10.0.0.0/30"]);
        let used = cidrs(&["10.0.0.1/32", "10.0.0.3/32"]);
        assert_eq!(shown(&free_blocks(&pool, &used)), ["10.0.0.0/32", "10.0.0.2/32"]);
        let all = cidrs(&["::/0"]);
        let used = cidrs(&["ffff:ffff:ffff:ffff::/64"]);
        let free = free_blocks(&all, &used);
        assert_eq!(free.len(), 64);
        assert_eq!(free[0].to_string(), "ffff:ffff:ffff:fffe::/64");
        assert_eq!(free[63].to_string(), "::/1");
        assert_eq!(free_blocks(&all, &all), Vec::new());
        let v6 = allocate_prefix(&cidrs(&["2001:db8::/48"]), &[], 64).expect("room");
        assert_eq!(v6.to_string(), "2001:db8::/64");
    }
}
