//! The agent's copy of the cluster's data: the topology (model objects) and
//! the shared state tables (learned MACs and ARP entries, port activity,
//! host liveness), kept from the ordered subscription stream.
//!
//! Every applied change reports the flow tags it invalidates, computed with
//! the simulation's own rule ([`midonet_sim::tags_for_change`] on the old and
//! new objects for topology keys, [`StateWrite::tag`] for state entries),
//! against the snapshot the installed flows were simulated with. A full
//! snapshot is diffed key by key against what the cache held, so a
//! reconnect that needs a resync still invalidates only what actually
//! changed. A topology value is decoded once, into the topology: the
//! object held is what a new value is compared with, and no copy of the
//! store's bytes is kept for it.
//!
//! The learned tables live in a [`MemState`] behind a lock that the
//! datapath thread's miss handler shares: it writes what it learns
//! directly (so the next packet sees it at once) and the cluster's echo of
//! the same entry changes nothing and invalidates nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use midonet_model::topology::Slot;
use midonet_model::{BridgeId, HostId, PortId, RouterId, Topology};
use midonet_proto::keys::{self, StateKey};
use midonet_proto::pb;
use midonet_sim::{MemState, Snapshot, StateWrite, StoreObject, Tag};
use parking_lot::RwLock;

/// The tag the agent adds to every flow that tunnels: tunnel-zone
/// membership (underlay addresses) is not read by the simulation, but the
/// translation of `ToPort` into a tunnel depends on it.
pub const TUNNEL_ROUTES_TAG: Tag = Tag(0x7475_6e6e_656c_7321);

/// Keys of a snapshot applied between two returns of free heap pages to
/// the kernel (see `apply_snapshot`).
const TRIM_EVERY: usize = 16_384;

/// What applying an update changed.
#[derive(Debug, Default)]
pub struct Applied {
    pub tags: Vec<Tag>,
    /// Whether topology objects changed (the sim snapshot must be rebuilt).
    pub topology_changed: bool,
    /// Router ARP entries that appeared (parked packets may proceed).
    pub arp_learned: Vec<(RouterId, Ipv4Addr)>,
    /// Keys that did not decode (logged, skipped).
    pub bad_keys: usize,
    /// SNAT blocks claimed (with their holder) or given back (`None`).
    pub snat_blocks: Vec<(midonet_state::BlockKey, Option<HostId>)>,
    /// Whether a host came, went or registered another datapath.
    pub hosts_changed: bool,
}

/// The cache itself; owned by the core task.
pub struct Cache {
    pub topology: Topology,
    /// Raw value of every state key held, to diff snapshots and to know
    /// whether a change changes anything (topology keys are diffed on
    /// their decoded objects, in `topology`).
    state_raw: HashMap<String, Vec<u8>>,
    pub state: Arc<RwLock<MemState>>,
    pub active_ports: BTreeSet<PortId>,
    /// The live hosts, each with the datapath provider its agent registered
    /// (empty when it did not say).
    pub alive_hosts: BTreeMap<HostId, String>,
    /// Who runs each load balancer's health checks.
    pub lb_checkers: BTreeMap<midonet_model::LoadBalancerId, HostId>,
    pub revision: i64,
    /// Whether a snapshot was ever applied.
    pub ready: bool,
}

impl Cache {
    /// The live hosts whose datapath reads offload metadata across the
    /// tunnel ([`crate::tunnel::reads_offload`]).
    pub fn offload_hosts(&self) -> impl Iterator<Item = HostId> + '_ {
        self.alive_hosts.iter().filter(|(_, d)| crate::tunnel::reads_offload(d)).map(|(h, _)| *h)
    }

    pub fn new(state: Arc<RwLock<MemState>>) -> Self {
        Cache {
            topology: Topology::default(),
            state_raw: HashMap::new(),
            state,
            active_ports: BTreeSet::new(),
            alive_hosts: BTreeMap::new(),
            lb_checkers: BTreeMap::new(),
            revision: 0,
            ready: false,
        }
    }

    /// Replaces everything with a snapshot.
    ///
    /// Each value is decoded once, straight into the topology; what the
    /// cache held is the decoded object itself, so an unchanged value is one
    /// that decodes equal to it (no copy of the store's bytes is kept for
    /// topology keys).
    pub fn apply_snapshot(&mut self, snap: pb::Snapshot, sim: &Snapshot) -> Applied {
        let mut out = Applied::default();
        // What the snapshot lacks is gone; only a resync has anything to
        // lose, so a first snapshot keeps no set of what it brought.
        let resync = !self.topology.is_empty() || !self.state_raw.is_empty();
        let mut slots: HashSet<Slot> = HashSet::new();
        let mut state_keys: HashSet<String> = HashSet::new();
        let mut state = Vec::new();
        for (i, kv) in snap.kvs.into_iter().enumerate() {
            if i > 0 && i % TRIM_EVERY == 0 {
                // The values decoded so far are freed, but on the thread
                // that received them (its malloc arena), where this one's
                // allocations do not reuse them: hand their pages back as
                // we go, or the whole message and the whole topology are
                // held at once (the agent's peak RSS at 100k ports).
                midonet_datapath::sys::trim_heap();
            }
            if midonet_proto::is_state_key(&kv.key) {
                if resync {
                    state_keys.insert(kv.key.clone());
                }
                state.push(kv);
                continue;
            }
            match Slot::parse(&kv.key) {
                Ok(slot) => {
                    if resync {
                        slots.insert(slot.clone());
                    }
                    self.change_topology(&kv.key, slot, &kv.value, sim, &mut out);
                }
                Err(e) => undecodable(&kv.key, &e, &mut out),
            }
        }
        if resync {
            let gone: Vec<Slot> = self.topology.slots().filter(|s| !slots.contains(s)).collect();
            for slot in gone {
                self.remove_topology(slot, sim, &mut out);
            }
            let gone: Vec<String> =
                self.state_raw.keys().filter(|k| !state_keys.contains(*k)).cloned().collect();
            for k in gone {
                self.change(&k, None, sim, &mut out);
            }
        }
        // State after topology: whether an ARP entry is a router's or a
        // bridge's is read from the topology.
        for kv in state {
            self.change(&kv.key, Some(kv.value), sim, &mut out);
        }
        self.revision = snap.revision;
        self.topology.revision = snap.revision;
        if !self.ready {
            out.topology_changed = true;
        }
        self.ready = true;
        finish(&mut out);
        out
    }

    /// Applies one revision's changes; a delta at or below the current
    /// revision (replayed after a reconnect) is ignored.
    pub fn apply_delta(&mut self, delta: pb::Delta, sim: &Snapshot) -> Option<Applied> {
        if delta.revision <= self.revision {
            return None;
        }
        let mut out = Applied::default();
        for c in delta.changes {
            let v = if c.deleted { None } else { Some(c.value) };
            self.change(&c.key, v, sim, &mut out);
        }
        self.revision = delta.revision;
        self.topology.revision = delta.revision;
        finish(&mut out);
        Some(out)
    }

    fn change(&mut self, key: &str, value: Option<Vec<u8>>, sim: &Snapshot, out: &mut Applied) {
        if midonet_proto::is_state_key(key) {
            let old = match &value {
                Some(v) => self.state_raw.insert(key.to_owned(), v.clone()),
                None => self.state_raw.remove(key),
            };
            if old.as_deref() != value.as_deref() {
                self.change_state(key, value.as_deref(), out);
            }
            return;
        }
        match Slot::parse(key) {
            Ok(slot) => match value {
                Some(v) => self.change_topology(key, slot, &v, sim, out),
                None => self.remove_topology(slot, sim, out),
            },
            Err(e) => undecodable(key, &e, out),
        }
    }

    /// Puts one topology value: decoded once, compared with the object
    /// held, and the tags of both taken with the simulation's rule.
    fn change_topology(
        &mut self,
        key: &str,
        slot: Slot,
        value: &[u8],
        sim: &Snapshot,
        out: &mut Applied,
    ) {
        let new = match slot.decode(key, value) {
            Ok(new) => new,
            // The object held before (if any) stays.
            Err(e) => return undecodable(key, &e, out),
        };
        let old = self.topology.get(&slot);
        if old == Some(new.as_ref()) {
            return;
        }
        changed(sim, &slot, old, Some(new.as_ref()), out);
        // `decode` gives the slot's own kind, which `put` holds.
        let _ = self.topology.put(slot, new);
    }

    fn remove_topology(&mut self, slot: Slot, sim: &Snapshot, out: &mut Applied) {
        let Some(old) = self.topology.take(&slot) else { return };
        changed(sim, &slot, Some(old.as_ref()), None, out);
    }

    fn change_state(&mut self, key: &str, value: Option<&[u8]>, out: &mut Applied) {
        let Some(sk) = keys::parse(key) else { return };
        match sk {
            StateKey::SnatBlock { device, ip, block } => {
                let (Ok(dev), Ok(ip)) = (device.parse::<uuid::Uuid>(), ip.parse::<Ipv4Addr>())
                else {
                    out.bad_keys += 1;
                    return;
                };
                let holder = liveness(value).and_then(|l| l.host_id.parse::<HostId>().ok());
                let key =
                    midonet_state::BlockKey { device: midonet_state::TrackerId(dev), ip, block };
                out.snat_blocks.push((key, holder));
            }
            StateKey::LbChecker { lb } => {
                let Ok(lb) = lb.parse() else {
                    out.bad_keys += 1;
                    return;
                };
                let holder = liveness(value).and_then(|l| l.host_id.parse::<HostId>().ok());
                match holder {
                    Some(h) => self.lb_checkers.insert(lb, h),
                    None => self.lb_checkers.remove(&lb),
                };
            }
            StateKey::HostAlive { host } => {
                let Ok(h) = host.parse() else { return };
                if value.is_some() {
                    let datapath = liveness(value).map(|l| l.datapath).unwrap_or_default();
                    self.alive_hosts.insert(h, datapath);
                } else {
                    self.alive_hosts.remove(&h);
                }
                out.hosts_changed = true;
            }
            StateKey::PortActive { port } => {
                if let Ok(p) = port.parse() {
                    if value.is_some() {
                        self.active_ports.insert(p);
                    } else {
                        self.active_ports.remove(&p);
                    }
                }
            }
            StateKey::Mac { bridge, vlan, mac } => {
                let (Ok(bridge), Ok(mac)) =
                    (bridge.parse::<BridgeId>(), mac.parse::<midonet_model::MacAddr>())
                else {
                    out.bad_keys += 1;
                    return;
                };
                let mac = midonet_sim::MacAddr(mac.0);
                let port = value
                    .and_then(|v| serde_json::from_slice::<midonet_proto::MacEntry>(v).ok())
                    .and_then(|e| e.port_id.parse::<PortId>().ok());
                let mut st = self.state.write();
                let cur = st.macs.get(&(bridge, vlan, mac)).copied();
                if cur == port {
                    return;
                }
                match port {
                    Some(p) => st.apply(&StateWrite::Mac { bridge, vlan, mac, port: p }),
                    None => {
                        st.macs.remove(&(bridge, vlan, mac));
                    }
                }
                out.tags.push(Tag::mac(bridge, vlan, mac));
            }
            StateKey::Arp { device, ip } => {
                let (Ok(dev), Ok(ip)) = (device.parse::<uuid::Uuid>(), ip.parse::<Ipv4Addr>())
                else {
                    out.bad_keys += 1;
                    return;
                };
                let mac = value
                    .and_then(|v| serde_json::from_slice::<midonet_proto::ArpEntry>(v).ok())
                    .and_then(|e| e.mac.parse::<midonet_model::MacAddr>().ok())
                    .map(|m| midonet_sim::MacAddr(m.0));
                let mut st = self.state.write();
                let router: RouterId = dev.into();
                if self.topology.routers.contains_key(&router) {
                    if st.router_arp.get(&(router, ip)).copied() == mac {
                        return;
                    }
                    match mac {
                        Some(m) => {
                            st.apply(&StateWrite::RouterArp { router, ip, mac: m });
                            out.arp_learned.push((router, ip));
                        }
                        None => {
                            st.router_arp.remove(&(router, ip));
                        }
                    }
                    out.tags.push(Tag::arp(router, ip));
                } else {
                    let bridge: BridgeId = dev.into();
                    if st.bridge_arp.get(&(bridge, ip)).copied() == mac {
                        return;
                    }
                    match mac {
                        Some(m) => st.apply(&StateWrite::BridgeArp { bridge, ip, mac: m }),
                        None => {
                            st.bridge_arp.remove(&(bridge, ip));
                        }
                    }
                    out.tags.push(Tag::bridge_arp(bridge, ip));
                }
            }
        }
    }
}

/// Records a topology change: the tags of the old and new objects, by the
/// simulation's rule, and the tunnel routes' tag for a tunnel-zone member.
fn changed(
    sim: &Snapshot,
    slot: &Slot,
    old: Option<midonet_model::topology::EntryRef<'_>>,
    new: Option<midonet_model::topology::EntryRef<'_>>,
    out: &mut Applied,
) {
    let of = |e| StoreObject::of(slot, e);
    midonet_sim::tags_for_change(sim, old.map(of), new.map(of), &mut out.tags);
    if matches!(slot, Slot::TunnelZoneHost(_)) {
        out.tags.push(TUNNEL_ROUTES_TAG);
    }
    out.topology_changed = true;
}

fn undecodable(key: &str, e: &midonet_model::topology::DecodeError, out: &mut Applied) {
    tracing::warn!(key, error = %e, "skipping undecodable topology entry");
    out.bad_keys += 1;
}

fn finish(out: &mut Applied) {
    out.tags.sort_unstable();
    out.tags.dedup();
}

/// The holder (and, for a host, the datapath) a liveness value names;
/// `None` for a deleted key or a value that does not decode.
fn liveness(value: Option<&[u8]>) -> Option<midonet_proto::Liveness> {
    value.and_then(|v| serde_json::from_slice(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use midonet_model::topology::Stored;
    use midonet_model::{Bridge, Chain, ChainId, Rule};

    fn kv(o: &impl Stored) -> pb::KeyValue {
        pb::KeyValue {
            key: o.store_key(),
            value: serde_json::to_vec(o).expect("json"),
            mod_revision: 1,
        }
    }

    #[test]
    fn snapshot_diff_and_delta_tags() {
        let mut c = Cache::new(Arc::default());
        let empty = Snapshot::build(&Topology::default());
        let b = Bridge {
            id: BridgeId::random(),
            name: "b".into(),
            admin_state_up: true,
            ..Default::default()
        };
        let chain = Chain { id: ChainId::random(), name: "c".into(), ..Default::default() };
        let a = c.apply_snapshot(
            pb::Snapshot { revision: 5, kvs: vec![kv(&b), kv(&chain)], more: false },
            &empty,
        );
        assert!(a.topology_changed);
        assert_eq!(c.topology.bridges.len(), 1);
        assert_eq!(c.revision, 5);

        // The same snapshot again (a resync) changes nothing.
        let sim = Snapshot::build(&c.topology);
        let a = c.apply_snapshot(
            pb::Snapshot { revision: 6, kvs: vec![kv(&b), kv(&chain)], more: false },
            &sim,
        );
        assert!(a.tags.is_empty() && !a.topology_changed);

        // A rule added to the chain invalidates the chain's tag only.
        let rule =
            Rule { id: midonet_model::RuleId::random(), chain_id: chain.id, ..Default::default() };
        let d = pb::Delta {
            revision: 7,
            changes: vec![pb::Change {
                key: rule.store_key(),
                value: serde_json::to_vec(&rule).expect("json"),
                deleted: false,
            }],
        };
        let a = c.apply_delta(d.clone(), &sim).expect("new revision");
        assert_eq!(a.tags, vec![Tag::chain(chain.id)]);
        assert!(c.apply_delta(d, &sim).is_none(), "replayed delta ignored");

        // A resync that lacks the rule and renames the bridge: the rule goes
        // (its chain's flows with it), the bridge's flows go, nothing else.
        let sim = Snapshot::build(&c.topology);
        let renamed = Bridge { name: "b2".into(), ..b.clone() };
        let a = c.apply_snapshot(
            pb::Snapshot { revision: 8, kvs: vec![kv(&renamed), kv(&chain)], more: false },
            &sim,
        );
        let mut want = vec![Tag::bridge(b.id), Tag::chain(chain.id)];
        want.sort_unstable();
        assert_eq!(a.tags, want);
        assert!(a.topology_changed);
        assert!(c.topology.rules.is_empty());
        assert_eq!(c.topology.bridges[&b.id].name, "b2");

        // A value that does not decode is counted and changes nothing: the
        // object held before stays.
        let garbage = pb::KeyValue { value: b"{".to_vec(), ..kv(&renamed) };
        let bad = pb::KeyValue { key: "/midonet/v1/bridges/not-an-id".into(), ..kv(&b) };
        let a = c.apply_snapshot(
            pb::Snapshot { revision: 9, kvs: vec![garbage, bad, kv(&chain)], more: false },
            &sim,
        );
        assert_eq!(a.bad_keys, 2);
        assert_eq!(c.topology.bridges[&b.id].name, "b2");
    }

    #[test]
    fn state_entries_fill_tables_and_echoes_do_not_invalidate() {
        let state: Arc<RwLock<MemState>> = Arc::default();
        let mut c = Cache::new(state.clone());
        let sim = Snapshot::build(&Topology::default());
        let bridge = BridgeId::random();
        let port = PortId::random();
        let key = keys::mac_entry(&bridge.to_string(), 0, "02:00:00:00:00:01");
        let val = serde_json::to_vec(&midonet_proto::MacEntry {
            port_id: port.to_string(),
            host_id: String::new(),
        })
        .expect("json");
        let d = |rev, v: Option<Vec<u8>>| pb::Delta {
            revision: rev,
            changes: vec![pb::Change {
                key: key.clone(),
                deleted: v.is_none(),
                value: v.unwrap_or_default(),
            }],
        };
        let mac = midonet_sim::MacAddr([2, 0, 0, 0, 0, 1]);
        let a = c.apply_delta(d(2, Some(val.clone())), &sim).expect("applied");
        assert_eq!(a.tags, vec![Tag::mac(bridge, 0, mac)]);
        assert_eq!(state.read().macs.get(&(bridge, 0, mac)), Some(&port));
        // Learned locally first, then echoed by the cluster: no invalidation.
        let key2 = keys::mac_entry(&bridge.to_string(), 0, "02:00:00:00:00:02");
        let mac2 = midonet_sim::MacAddr([2, 0, 0, 0, 0, 2]);
        state.write().apply(&StateWrite::Mac { bridge, vlan: 0, mac: mac2, port });
        let echo = pb::Delta {
            revision: 3,
            changes: vec![pb::Change { key: key2, value: val, deleted: false }],
        };
        assert!(c.apply_delta(echo, &sim).expect("applied").tags.is_empty());
        // Lease gone: entry removed and invalidated.
        let a = c.apply_delta(d(4, None), &sim).expect("applied");
        assert_eq!(a.tags, vec![Tag::mac(bridge, 0, mac)]);
        assert!(!state.read().macs.contains_key(&(bridge, 0, mac)));
    }

    /// A host's liveness value says which datapath it runs: a userspace
    /// host reads offload metadata, an ebpf host or one that did not say
    /// does not, and a host whose session ends is no peer of either kind.
    #[test]
    fn host_liveness_sorts_hosts_by_what_their_tunnel_reads() {
        let mut c = Cache::new(Arc::default());
        let sim = Snapshot::build(&Topology::default());
        let (us, eb, old) = (HostId::random(), HostId::random(), HostId::random());
        let alive = |h: HostId, datapath: &str| pb::Change {
            key: keys::host_alive(&h.to_string()),
            value: serde_json::to_vec(&midonet_proto::Liveness {
                datapath: datapath.into(),
                ..midonet_proto::Liveness::of(h.to_string(), 1)
            })
            .expect("json"),
            deleted: false,
        };
        let changes = vec![alive(us, "userspace"), alive(eb, "ebpf"), alive(old, "")];
        let a = c.apply_delta(pb::Delta { revision: 2, changes }, &sim).expect("applied");
        assert!(a.hosts_changed && !a.topology_changed);
        assert_eq!(
            c.alive_hosts.keys().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([us, eb, old])
        );
        assert_eq!(c.offload_hosts().collect::<BTreeSet<_>>(), BTreeSet::from([us]));
        // The ebpf host restarts as a userspace fallback; the userspace one dies.
        let gone = pb::Change { value: Vec::new(), deleted: true, ..alive(us, "") };
        let changes = vec![alive(eb, "userspace"), gone];
        c.apply_delta(pb::Delta { revision: 3, changes }, &sim).expect("applied");
        assert_eq!(
            c.alive_hosts.keys().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from([eb, old])
        );
        assert_eq!(c.offload_hosts().collect::<BTreeSet<_>>(), BTreeSet::from([eb]));
    }
}
