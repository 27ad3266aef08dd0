//! The registry of stored object kinds and the store key layout.
//!
//! ```text
//! /midonet/v1/<segment>/<id>                     top-level objects
//! /midonet/v1/<segment>/<parent>/<child>[/...]   sub-objects (members, entries)
//! ```
//!
//! Each kind has one segment; a key's kind is found from its segment alone,
//! so a prefix watch on `/midonet/v1/` can be decoded without other context.
//! Adding a kind (BGP peer, VTEP, QoS policy) is one variant here plus its
//! struct; nothing else changes shape.

/// Root of every key this version writes.
pub const KEY_ROOT: &str = "/midonet/v1/";

macro_rules! kinds {
    ($($variant:ident => $segment:literal),+ $(,)?) => {
        /// A kind of stored object.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ObjectKind { $($variant),+ }

        impl ObjectKind {
            pub const ALL: &'static [ObjectKind] = &[$(ObjectKind::$variant),+];
            /// The key segment (also the REST collection name where there is one).
            pub fn segment(&self) -> &'static str {
                match self { $(ObjectKind::$variant => $segment),+ }
            }
            pub fn from_segment(s: &str) -> Option<ObjectKind> {
                match s { $($segment => Some(ObjectKind::$variant),)+ _ => None }
            }
        }
    };
}

kinds! {
    Bridge => "bridges",
    Router => "routers",
    Port => "ports",
    Route => "routes",
    Chain => "chains",
    Rule => "rules",
    PortGroup => "port_groups",
    IpAddrGroup => "ip_addr_groups",
    IpAddrGroupAddr => "ip_addr_group_addrs",
    Host => "hosts",
    HostInterface => "host_interfaces",
    TunnelZone => "tunnel_zones",
    TunnelZoneHost => "tunnel_zone_hosts",
    DhcpSubnet => "dhcp_subnets",
    DhcpHost => "dhcp_hosts",
    MacTableEntry => "mac_table",
    ArpTableEntry => "arp_table",
    LoadBalancer => "load_balancers",
    Pool => "pools",
    PoolMember => "pool_members",
    Vip => "vips",
    HealthMonitor => "health_monitors",
    Mirror => "mirrors",
}

impl ObjectKind {
    /// The prefix under which all objects of this kind live.
    pub fn prefix(&self) -> String {
        format!("{KEY_ROOT}{}/", self.segment())
    }

    /// The key of an object of this kind, from its id path (one part for
    /// top-level objects, parent then child for sub-objects).
    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = format!("{KEY_ROOT}{}", self.segment());
        for p in parts {
            k.push('/');
            k.push_str(p);
        }
        k
    }

    /// Splits a store key into its kind and id parts.
    pub fn parse_key(key: &str) -> Option<(ObjectKind, Vec<&str>)> {
        let rest = key.strip_prefix(KEY_ROOT)?;
        let mut it = rest.split('/');
        let kind = ObjectKind::from_segment(it.next()?)?;
        let parts: Vec<&str> = it.collect();
        if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some((kind, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_for_every_kind() {
        for k in ObjectKind::ALL {
            let key = k.key(&["a", "b"]);
            assert!(key.starts_with(&k.prefix()));
            let (kind, parts) = ObjectKind::parse_key(&key).expect("parse");
            assert_eq!(kind, *k);
            assert_eq!(parts, vec!["a", "b"]);
        }
        assert!(ObjectKind::parse_key("/midonet/v1/nope/x").is_none());
        assert!(ObjectKind::parse_key("/midonet/v1/bridges/").is_none());
        assert!(ObjectKind::parse_key("/other/bridges/x").is_none());
    }
}
