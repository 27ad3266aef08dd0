//! [`RouteTable`]: a router's routes as a binary trie, built once per
//! snapshot and walked once per routed packet without allocating.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use midonet_model::{PortId, RouteId, RouteType};

/// One route, compiled.
#[derive(Clone, Debug)]
pub struct SRoute {
    pub id: Option<RouteId>,
    pub kind: RouteType,
    pub src: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub port: Option<PortId>,
    pub weight: u32,
    /// For rendezvous hashing: a fixed hash of the next hop (port, gateway).
    pub hrw: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RouteSet {
    /// The destination prefix length of these routes.
    pub len: u8,
    /// Sorted by weight, then id.
    pub routes: Vec<SRoute>,
}

#[derive(Clone, Copy, Debug, Default)]
struct TNode {
    /// Index of the child for bit 0 / 1; 0 means none (the root is never a child).
    child: [u32; 2],
    /// 1 + index into `sets`, 0 when no route ends here.
    set: u32,
}

/// A router's routes as a binary trie over destination prefixes.
///
/// Why not the `prefix-trie` crate: its iterators allocate, and the megaflow
/// mask needs something it does not expose — how deep the walk along the
/// destination goes before it leaves every other prefix behind. With a
/// plain binary trie, `RouteTable::walk` returns both the covering
/// prefixes and that depth without allocating.
///
/// **Mask rule.** Let C be the chosen prefix. A packet agreeing with the
/// destination on the first L bits picks C too when no prefix *not*
/// containing the destination shares L or more leading bits with it (such a
/// prefix would capture some of those packets). In the trie, a prefix that
/// shares exactly d bits hangs off the walk's path at depth d, so
/// L = max(len(C), 1 + deepest d with an off-path child). Prefixes on the
/// path that were skipped because their source prefix did not match need no
/// destination bits: their source test is marked.
#[derive(Clone, Debug)]
pub struct RouteTable {
    nodes: Vec<TNode>,
    pub(crate) sets: Vec<RouteSet>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable { nodes: vec![TNode::default()], sets: Vec::new() }
    }
}

impl RouteTable {
    pub(crate) fn build(mut routes: Vec<(Ipv4Net, SRoute)>) -> RouteTable {
        routes.sort_by_key(|(net, r)| (*net, r.weight, r.id));
        let mut t = RouteTable::default();
        for (net, r) in routes {
            let addr = u32::from(net.network());
            let mut node = 0usize;
            for depth in 0..net.prefix_len() {
                let bit = ((addr >> (31 - depth)) & 1) as usize;
                if t.nodes[node].child[bit] == 0 {
                    t.nodes.push(TNode::default());
                    t.nodes[node].child[bit] = (t.nodes.len() - 1) as u32;
                }
                node = t.nodes[node].child[bit] as usize;
            }
            if t.nodes[node].set == 0 {
                t.sets.push(RouteSet { len: net.prefix_len(), routes: Vec::new() });
                t.nodes[node].set = t.sets.len() as u32;
            }
            let set = t.nodes[node].set as usize - 1;
            t.sets[set].routes.push(r);
        }
        t
    }

    /// Walk the trie along `dst`: fills `cover` with the indices (into
    /// `sets`) of the prefixes containing `dst`, shortest first, and returns
    /// how many, plus the branch depth (1 + the deepest depth at which some
    /// other prefix leaves the path; 0 if none) — see the type docs.
    pub(crate) fn walk(&self, dst: Ipv4Addr, cover: &mut [u32; 33]) -> (usize, u8) {
        let dst = u32::from(dst);
        let mut node = 0usize;
        let mut branch = 0u8;
        let mut n = 0usize;
        for depth in 0..=32u32 {
            let nd = self.nodes[node];
            if nd.set != 0 {
                cover[n] = nd.set - 1;
                n += 1;
            }
            if depth == 32 {
                break;
            }
            let bit = ((dst >> (31 - depth)) & 1) as usize;
            if nd.child[bit ^ 1] != 0 {
                branch = depth as u8 + 1;
            }
            match nd.child[bit] {
                0 => break,
                c => node = c as usize,
            }
        }
        (n, branch)
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.sets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_walk_reports_cover_and_branch_depth() {
        let r = |n: &str| {
            (
                n.parse::<Ipv4Net>().expect("net"),
                SRoute {
                    id: None,
                    kind: RouteType::Normal,
                    src: Ipv4Net::default(),
                    gateway: None,
                    port: None,
                    weight: 1,
                    hrw: 0,
                },
            )
        };
        let t = RouteTable::build(vec![
            r("10.0.0.0/8"),
            r("10.1.0.0/16"),
            r("10.1.2.0/24"),
            r("0.0.0.0/0"),
        ]);
        assert_eq!(t.len(), 4);
        let mut cover = [0u32; 33];
        // 10.1.2.3: covered by /0, /8, /16, /24; nothing branches off below.
        let (n, branch) = t.walk("10.1.2.3".parse().expect("ip"), &mut cover);
        let lens: Vec<u8> = cover[..n].iter().map(|i| t.sets[*i as usize].len).collect();
        assert_eq!(lens, vec![0, 8, 16, 24]);
        assert!(branch <= 24);
        // 10.1.3.3: /24 leaves the path at bit 23 (10.1.2 vs 10.1.3).
        let (n, branch) = t.walk("10.1.3.3".parse().expect("ip"), &mut cover);
        assert_eq!(n, 3);
        assert_eq!(branch, 24);
        // 10.200.0.1: /16 leaves at bit 8 (0x01 vs 0xc8 differ at bit 8).
        let (n, branch) = t.walk("10.200.0.1".parse().expect("ip"), &mut cover);
        assert_eq!(n, 2);
        assert_eq!(branch, 9);
        let empty = RouteTable::default();
        assert_eq!(empty.walk("1.2.3.4".parse().expect("ip"), &mut cover), (0, 0));
    }
}
