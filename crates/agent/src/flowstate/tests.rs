use midonet_datapath::RevNatEntry;
use midonet_sim::{ConnWrite, NatWrite};
use midonet_state::{proto, ConnState, TrackerId};

use super::*;

const SYN: u16 = 0x002;
const ACK: u16 = 0x010;

pub(super) fn key(sport: u16) -> ConnKey {
    ConnKey {
        src: Ipv4Addr::new(10, 0, 0, 2),
        dst: Ipv4Addr::new(10, 0, 0, 1),
        src_port: sport,
        dst_port: 80,
        proto: proto::TCP,
        tracker: TrackerId(uuid::Uuid::from_u128(7)),
    }
}

fn recorded(k: ConnKey) -> SimResult {
    let mut r = SimResult::default();
    r.conntrack.push(ConnWrite { key: k, tcp_flags: SYN });
    r.tags.push(Tag::conntrack(&k));
    r
}

/// What a reply's simulation leaves: the lookup's tag, no record.
fn looked_up(k: ConnKey) -> SimResult {
    let mut r = SimResult::default();
    r.tags.push(Tag::port(PortId::random()));
    r.tags.push(Tag::conntrack(&k));
    r
}

#[test]
fn a_new_connection_invalidates_once_and_is_sent_every_time() {
    let mut fs = FlowState::new(100, 1);
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    let t = Duration::from_secs(1);
    fs.apply(&recorded(key(1000)), &[], SYN, t, &mut send, &mut stale);
    assert_eq!(stale, vec![Tag::conntrack(&key(1000)).0], "a new key's tag is stale");
    assert_eq!(send.conntrack.len(), 1);
    assert_eq!(send.conntrack[0].state, ConnState::SynSent.code());
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    fs.apply(&recorded(key(1000)), &[], SYN, t, &mut send, &mut stale);
    assert!(stale.is_empty(), "an existing key invalidates nothing");
    assert_eq!(send.conntrack.len(), 1, "re-simulations re-send (lost messages heal)");
}

#[test]
fn a_reply_establishes_the_connection_and_says_so() {
    let mut fs = FlowState::new(100, 1);
    let t = Duration::from_secs(1);
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    fs.apply(&recorded(key(1000)), &[], SYN, t, &mut send, &mut stale);
    let mut send = Outgoing::default();
    fs.apply(&looked_up(key(1000)), &[], SYN | ACK, t, &mut send, &mut stale);
    assert_eq!(send.conntrack.len(), 1, "the change is replicated");
    assert_eq!(send.conntrack[0].state, ConnState::Replied.code());
    let (c, _) = fs.conn.lookup(&key(1000), t).expect("tracked");
    assert_eq!(c.state, ConnState::Replied);
    // Established: the kernel's five days, not the SYN-sent two minutes.
    assert!(c.expires > t + Duration::from_secs(3600));
    let mut send = Outgoing::default();
    fs.apply(&looked_up(key(1000)), &[], ACK, t, &mut send, &mut stale);
    assert!(send.is_empty(), "nothing changed, nothing sent");
}

#[test]
fn a_binding_found_in_reverse_refreshes_it_here_and_tells_no_peer() {
    use midonet_state::{NatBinding, NatKey, NatKind};
    let mut fs = FlowState::new(100, 1);
    let t = Duration::from_secs(1);
    let nk = NatKey::new(NatKind::Snat, key(3));
    let b = NatBinding { ip: Ipv4Addr::new(203, 0, 113, 2), port: 40000 };
    fs.nat.insert(nk, b, t + Duration::from_secs(30), t).expect("room");
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    let mut reply = SimResult::default();
    reply.nat.push(NatWrite { key: nk, binding: b, created: false, reverse: true });
    fs.apply(&reply, &[], SYN | ACK, t, &mut send, &mut stale);
    assert!(send.is_empty(), "the reply's translation is news to nobody");
    assert!(stale.is_empty());
    let exp = fs.nat.iter(t).find(|e| e.key == nk).map(|e| e.expires).expect("bound");
    assert!(exp > t + Duration::from_secs(30), "refreshed here: {exp:?}");
    // The forward direction used again (a re-simulation) still says so.
    let mut again = SimResult::default();
    again.nat.push(NatWrite { key: nk, binding: b, created: false, reverse: false });
    fs.apply(&again, &[], ACK, t, &mut send, &mut stale);
    assert_eq!(send.nat.len(), 1, "re-simulations re-send (lost messages heal)");
}

#[test]
fn received_state_is_installed_and_never_undoes_a_reply() {
    let mut fs = FlowState::new(100, 1);
    let t = Duration::from_secs(1);
    let msg = FlowStateRepr {
        conntrack: vec![conntrack_repr(&key(1000), ConnState::SynSent)],
        ..FlowStateRepr::default()
    };
    let (done, tags) = fs.install(&msg, t);
    assert_eq!(done.conntrack, 1);
    assert_eq!(tags, vec![Tag::conntrack(&key(1000))]);
    assert!(fs.conn.is_return(&key(1000).reversed(), t));
    // The reply seen here, then the sender's SYN-sent copy again.
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    fs.apply(&looked_up(key(1000)), &[], SYN | ACK, t, &mut send, &mut stale);
    fs.install(&msg, t);
    assert_eq!(fs.conn.lookup(&key(1000), t).expect("tracked").0.state, ConnState::Replied);
}

#[test]
fn a_peer_refreshing_a_known_binding_invalidates_nothing_and_a_newer_one_replaces_it() {
    use midonet_state::{NatBinding, NatKey, NatKind};
    let t = Duration::from_secs(1);
    let mut fs = FlowState::new(100, 1);
    let key = NatKey::new(NatKind::Snat, key(1000));
    let b = NatBinding { ip: Ipv4Addr::new(192, 0, 2, 1), port: 1030 };
    let msg = FlowStateRepr {
        conntrack: vec![conntrack_repr(&key.conn, ConnState::SynSent)],
        nat: vec![nat_repr(&key, b)],
        ..FlowStateRepr::default()
    };
    let (_, tags) = fs.install(&msg, t);
    assert_eq!(tags.len(), 3, "new: the connection and both binding tags");
    let (_, tags) = fs.install(&msg, t + Duration::from_secs(1));
    assert!(tags.is_empty(), "known: nothing is stale, {tags:?}");
    let moved = FlowStateRepr {
        nat: vec![nat_repr(&key, NatBinding { port: 2000, ..b })],
        ..FlowStateRepr::default()
    };
    let (done, tags) = fs.install(&moved, t + Duration::from_secs(2));
    assert_eq!(
        (done.refused, done.replaced),
        (0, 1),
        "the allocating peer's newer binding replaces the copy here"
    );
    assert_eq!(tags.len(), 4, "the old binding's flows and the new one's: {tags:?}");
    let now = t + Duration::from_secs(2);
    assert_eq!(fs.nat.get(&key, now).map(|b| b.port), Some(2000));
    // A binding this host allocated (its block is held here) stays.
    let block = BlockKey::of(key.conn.tracker, b.ip, 3000);
    fs.blocks.granted(block, now);
    let mine = NatKey::new(NatKind::Snat, ConnKey { src_port: 1001, ..key.conn });
    let mut gone = Vec::new();
    fs.nat
        .import(
            mine,
            NatBinding { port: 3000, ..b },
            now + NAT_IMPORT_TTL,
            now,
            |_, _| false,
            &mut gone,
        )
        .expect("stored");
    let theirs = FlowStateRepr {
        nat: vec![nat_repr(&mine, NatBinding { port: 4000, ..b })],
        ..FlowStateRepr::default()
    };
    let (done, tags) = fs.install(&theirs, now);
    assert_eq!((done.refused, done.replaced), (1, 0), "this host's own allocation stays");
    assert!(tags.is_empty());
    assert_eq!(fs.nat.get(&mine, now).map(|b| b.port), Some(3000));
}

#[test]
fn activity_refreshes_and_idleness_expires_with_the_flows_tags() {
    let mut fs = FlowState::new(100, 1);
    let t0 = Duration::from_secs(1);
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    fs.apply(&recorded(key(1)), &[], SYN, t0, &mut send, &mut stale);
    fs.apply(&recorded(key(2)), &[], SYN, t0, &mut send, &mut stale);
    // SYN-sent lives 120 s; key 1's flow is used at 100 s.
    let t1 = t0 + Duration::from_secs(100);
    let used = [Tag::conntrack(&key(1)).0, Tag::port(PortId::random()).0];
    assert_eq!(fs.refresh(used.iter(), t1), 1);
    let t2 = t0 + Duration::from_secs(150);
    let gone = fs.expire(t2);
    assert_eq!(gone, vec![Tag::conntrack(&key(2))], "only the idle one expired");
    assert!(fs.conn.lookup(&key(1), t2).is_some());
    assert_eq!(fs.refresh([Tag::conntrack(&key(2)).0].iter(), t2), 0, "gone from the index");
    let flushed = fs.flush(None, t2);
    assert_eq!(flushed, vec![Tag::conntrack(&key(1))]);
    assert!(fs.conn.is_empty());
}

#[test]
fn fin_and_rst_on_a_flow_close_its_connection_and_binding() {
    use midonet_state::{NatBinding, NatKey, NatKind};
    let mut fs = FlowState::new(100, 1);
    let t0 = Duration::from_secs(1);
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    // A connection tracked, and a DNAT binding (a VIP's) made by a
    // simulation of another connection.
    fs.apply(&recorded(key(1)), &[], SYN, t0, &mut send, &mut stale);
    let nk = NatKey::new(NatKind::Dnat, key(2));
    let b = NatBinding { ip: Ipv4Addr::new(10, 1, 0, 1), port: 80 };
    fs.nat.insert(nk, b, t0 + Duration::from_secs(300), t0).expect("room");
    let mut r = SimResult::default();
    r.nat.push(NatWrite { key: nk, binding: b, created: true, reverse: false });
    fs.apply(&r, &[], SYN, t0, &mut send, &mut stale);
    let conn_tags = [Tag::conntrack(&key(1)).0];
    let nat_tags_ = nat_tags(&nk, b).map(|t| t.0);
    // In use: refreshed to the established timeout (days).
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(fs.refresh(nat_tags_.iter(), t1), 2);
    let exp = |fs: &FlowState| fs.nat.iter(t1).find(|e| e.key == nk).map(|e| e.expires);
    assert!(exp(&fs).expect("bound") > t1 + Duration::from_secs(3600));
    // Flags without FIN/RST close nothing.
    assert_eq!(fs.close(nat_tags_.iter(), ACK | SYN, t1), 0);
    // A FIN: 120 s, and activity keeps it at that, not days.
    assert_eq!(fs.close(nat_tags_.iter(), 0x001 | ACK, t1), 2);
    assert_eq!(exp(&fs), Some(t1 + Duration::from_secs(120)));
    let t2 = t1 + Duration::from_secs(60);
    fs.refresh(nat_tags_.iter(), t2);
    assert_eq!(
        fs.nat.iter(t2).find(|e| e.key == nk).map(|e| e.expires),
        Some(t2 + Duration::from_secs(120))
    );
    // An RST: 10 s.
    assert_eq!(fs.close(conn_tags.iter(), 0x004, t2), 1);
    let c = fs.conn.lookup(&key(1), t2).expect("tracked").0;
    assert_eq!(c.expires, t2 + Duration::from_secs(10));
    // The client reuses the 5-tuple: a SYN missing onto the binding
    // opens it again.
    let mut again = SimResult::default();
    again.nat.push(NatWrite { key: nk, binding: b, created: false, reverse: false });
    fs.apply(&again, &[], SYN, t2, &mut send, &mut stale);
    assert!(
        fs.nat.iter(t2).find(|e| e.key == nk).expect("bound").expires
            > t2 + Duration::from_secs(3600)
    );
    // Closed and idle: gone after the closing lifetime.
    fs.close(nat_tags_.iter(), 0x001, t2);
    let gone = fs.expire(t2 + Duration::from_secs(121));
    assert!(gone.contains(&Tag::nat(&nk)), "{gone:?}");
    assert!(fs.closing.is_empty(), "forgotten with the binding");
}

#[test]
fn a_snapshot_replays_into_the_same_tables_and_blocks() {
    use midonet_state::{NatBinding, NatKey, NatKind};
    let t = Duration::from_secs(1);
    let mut fs = FlowState::new(100, 1);
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    fs.apply(&recorded(key(1000)), &[], SYN, t, &mut send, &mut stale);
    // A SNAT binding made here, in a block this host holds, and one
    // received from a peer.
    let public = Ipv4Addr::new(192, 0, 2, 1);
    let here = NatKey::new(NatKind::Snat, key(1000));
    let b = NatBinding { ip: public, port: 1030 };
    fs.blocks.granted(BlockKey::of(here.conn.tracker, public, 1030), t);
    fs.nat.insert(here, b, t + Duration::from_secs(300), t).expect("room");
    let peer = NatKey::new(NatKind::Snat, key(2000));
    fs.nat
        .insert(peer, NatBinding { ip: public, port: 5000 }, t + Duration::from_secs(300), t)
        .expect("room");
    let snap = fs.snapshot(t);
    assert!(snap.iter().any(|(o, m)| *o == Origin::Here && m.nat.len() == 1));

    let mut again = FlowState::new(100, 2);
    let blocks = again.replay(&snap, t);
    assert_eq!(blocks, vec![BlockKey::of(here.conn.tracker, public, 1030)], "only ours");
    assert!(again.conn.is_return(&key(1000).reversed(), t));
    assert_eq!(again.nat.get(&here, t), Some(b));
    assert!(again.nat.get(&peer, t).is_some());
    assert!(again.blocks.holds(&blocks[0]));
    // The restored binding keeps its block from going back as idle.
    assert!(again.blocks.idle(t + Duration::from_secs(3600), Duration::from_secs(300)).is_empty());
}

#[test]
fn peers_are_egress_hosts_and_stateful_groups_never_this_host() {
    let (p_in, p_out, p_local) = (PortId::random(), PortId::random(), PortId::random());
    let (a, b, c) =
        (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 4));
    let mut view = View::empty();
    view.egress.insert(p_out, Egress::Remote { dst: a, key: 5 });
    view.egress.insert(p_local, Egress::Local(3));
    view.state_peers.insert(p_in, vec![b]);
    view.state_peers.insert(p_out, vec![a, c]);
    let actions = [SimAction::ToPort(p_out), SimAction::ToPort(p_local)];
    assert_eq!(peers(&view, p_in, &actions), vec![a, b, c]);
    assert!(peers(&view, p_local, &[SimAction::ToPort(p_local)]).is_empty());
}

/// The agent's side of the datapath's reverse-NAT table, in memory (the
/// BPF map itself needs root and is tested in `datapath/tests/ebpf.rs`):
/// its flags are cumulative, as the map's are, and `used` sets when a
/// reply last used an entry.
#[derive(Default)]
struct MemRevNat {
    entries: parking_lot::Mutex<HashMap<midonet_datapath::RevNatKey, (RevNatEntry, u16, Duration)>>,
    /// The conntrack table: flags and last use of each connection.
    ct: parking_lot::Mutex<HashMap<midonet_datapath::CtKey, (u16, Duration)>>,
    clock: parking_lot::Mutex<Duration>,
}

impl MemRevNat {
    /// A reply under `key` with TCP `flags`, at `at`.
    fn reply(&self, e: &RevNatEntry, flags: u16, at: Duration) {
        *self.clock.lock() = at;
        let mut m = self.entries.lock();
        let v = m.get_mut(&e.key).expect("in the table");
        v.1 |= flags;
        v.2 = at;
    }

    /// A reply of connection `k` took a second half through the conntrack
    /// check, with TCP `flags`, at `at`.
    fn ct_reply(&self, k: &ConnKey, flags: u16, at: Duration) {
        *self.clock.lock() = at;
        let mut m = self.ct.lock();
        let v = m.get_mut(&kernel::ct_entry(k).expect("tcp")).expect("in the table");
        v.0 |= flags;
        v.1 = at;
    }

    fn ct_holds(&self, k: &ConnKey) -> bool {
        self.ct.lock().contains_key(&kernel::ct_entry(k).expect("tcp"))
    }
}

impl RevNatTable for MemRevNat {
    fn set_recirc(
        &self,
        _: u32,
        _: midonet_datapath::RevNatKind,
        _: [u8; 16],
    ) -> Result<(), midonet_datapath::DpError> {
        Ok(())
    }
    fn upsert(&self, entries: &[RevNatEntry]) -> Result<(), midonet_datapath::DpError> {
        let mut m = self.entries.lock();
        for e in entries {
            let keep = m.get(&e.key).filter(|(o, ..)| (o.ip, o.port) == (e.ip, e.port));
            let (flags, used) = keep.map_or((0, Duration::ZERO), |(_, f, u)| (*f, *u));
            m.insert(e.key, (*e, flags, used));
        }
        Ok(())
    }
    fn remove(
        &self,
        keys: &[midonet_datapath::RevNatKey],
    ) -> Result<(), midonet_datapath::DpError> {
        let mut m = self.entries.lock();
        for k in keys {
            m.remove(k);
        }
        Ok(())
    }
    fn remove_exact(&self, entries: &[RevNatEntry]) -> Result<(), midonet_datapath::DpError> {
        let mut m = self.entries.lock();
        for e in entries {
            if m.get(&e.key).is_some_and(|(o, ..)| (o.ip, o.port) == (e.ip, e.port)) {
                m.remove(&e.key);
            }
        }
        Ok(())
    }
    fn last_used(&self, key: &midonet_datapath::RevNatKey) -> Option<Duration> {
        self.entries.lock().get(key).map(|v| v.2).filter(|u| !u.is_zero())
    }
    fn now(&self) -> Duration {
        *self.clock.lock()
    }
    fn used_since(&self, since: Duration) -> Vec<(RevNatEntry, u16)> {
        let m = self.entries.lock();
        m.values().filter(|v| !v.2.is_zero() && v.2 >= since).map(|v| (v.0, v.1)).collect()
    }
    fn set_recirc_conntrack(
        &self,
        _: u32,
        _: Option<[u8; 16]>,
    ) -> Result<(), midonet_datapath::DpError> {
        Ok(())
    }
    fn ct_insert(
        &self,
        keys: &[midonet_datapath::CtKey],
        fresh: bool,
    ) -> Result<(), midonet_datapath::DpError> {
        let mut m = self.ct.lock();
        for k in keys {
            if fresh || !m.contains_key(k) {
                m.insert(*k, (0, Duration::ZERO));
            }
        }
        Ok(())
    }
    fn ct_remove(&self, keys: &[midonet_datapath::CtKey]) -> Result<(), midonet_datapath::DpError> {
        let mut m = self.ct.lock();
        for k in keys {
            m.remove(k);
        }
        Ok(())
    }
    fn ct_keys(&self) -> Vec<midonet_datapath::CtKey> {
        self.ct.lock().keys().copied().collect()
    }
    fn ct_used_since(&self, since: Duration) -> Vec<(midonet_datapath::CtKey, u16)> {
        let m = self.ct.lock();
        m.iter().filter(|(_, v)| !v.1.is_zero() && v.1 >= since).map(|(k, v)| (*k, v.0)).collect()
    }
}

/// The datapath's conntrack table (which split flows reading conntrack
/// check) holds what the agent's holds: connections tracked here and
/// copies from peers go in, expired and flushed ones come out. The
/// replies it let through advance and keep the connection, as a flow's
/// would: the first makes it replied, a FIN closes it, use keeps a closing
/// one alive, and without use it expires and leaves the datapath's table.
#[test]
fn the_datapaths_conntrack_table_follows_the_connections_and_their_replies() {
    use midonet_flow::key::tcp_flags::FIN;
    use midonet_state::Timeouts;
    let s = Duration::from_secs;
    let table = Arc::new(MemRevNat::default());
    let mut fs = FlowState::new(100, 1);
    // Tracked before the table is known: written when it is (its stamps
    // kept, as an earlier agent left them). A connection the earlier agent
    // left that this one does not track goes.
    let (mut send, mut stale) = (Outgoing::default(), Vec::new());
    fs.apply(&recorded(key(1000)), &[], SYN, s(1), &mut send, &mut stale);
    let kept = kernel::ct_entry(&key(1000)).expect("tcp");
    table.ct.lock().insert(kept, (ACK, s(1)));
    table.ct.lock().insert(kernel::ct_entry(&key(999)).expect("tcp"), (ACK, s(1)));
    fs.set_rev_nat(table.clone(), s(1));
    assert!(table.ct_holds(&key(1000)) && !table.ct_holds(&key(999)));
    assert_eq!(table.ct.lock()[&kept], (ACK, s(1)));
    // Tracked here, and a peer's copy.
    fs.apply(&recorded(key(1001)), &[], SYN, s(1), &mut send, &mut stale);
    let peer = key(1002);
    let msg = FlowStateRepr {
        conntrack: vec![conntrack_repr(&peer, ConnState::SynSent)],
        ..FlowStateRepr::default()
    };
    fs.install(&msg, s(1));
    assert!(table.ct_holds(&key(1001)) && table.ct_holds(&peer));
    assert_eq!(table.ct.lock().len(), 3);
    // The datapath took the peer's copy from the message and a reply used
    // it before the agent read it: reading it keeps that use.
    let early = key(1003);
    let ct_key = kernel::ct_entry(&early).expect("tcp");
    table.ct.lock().insert(ct_key, (SYN | ACK, s(1)));
    let early_msg = FlowStateRepr {
        conntrack: vec![conntrack_repr(&early, ConnState::SynSent)],
        ..FlowStateRepr::default()
    };
    fs.install(&early_msg, s(1));
    assert_eq!(table.ct.lock()[&ct_key], (SYN | ACK, s(1)), "not wiped");

    // Replies through the datapath: the copy is replied, then closing.
    let window = s(6);
    table.ct_reply(&peer, ACK | SYN, s(5));
    fs.refresh_from_kernel(window, s(5));
    assert_eq!(fs.conn.lookup(&peer, s(5)).map(|(c, _)| c.state), Some(ConnState::Replied));
    table.ct_reply(&peer, ACK | FIN, s(10));
    assert_eq!(fs.refresh_from_kernel(window, s(10)).1, 1, "the FIN closes it");
    assert_eq!(fs.conn.lookup(&peer, s(10)).map(|(c, _)| c.state), Some(ConnState::Closing));
    // Replies keep coming (the FIN stays in the flags): alive from each.
    let closing = Timeouts::default().tcp_closing;
    let mut at = s(10);
    while at < s(10) + closing * 2 {
        at += s(5);
        table.ct_reply(&peer, ACK, at);
        assert_eq!(fs.refresh_from_kernel(window, at).1, 0, "closed once");
    }
    assert!(fs.conn.lookup(&peer, at + closing - s(1)).is_some());
    // No more: it expires, and leaves the datapath's table.
    let gone = at + closing + s(1);
    let tags = fs.expire(gone);
    assert!(tags.contains(&Tag::conntrack(&peer)));
    assert!(!table.ct_holds(&peer), "taken out with it");
    // Flushed ones come out too.
    fs.flush(None, gone);
    assert!(table.ct.lock().is_empty());
    // A peer's copy opened again after closing is written afresh.
    fs.install(&msg, gone);
    table.ct_reply(&peer, ACK | FIN, gone + s(1));
    fs.refresh_from_kernel(window, gone + s(1));
    let again = FlowStateRepr {
        conntrack: vec![conntrack_repr(&peer, ConnState::SynSent)],
        ..FlowStateRepr::default()
    };
    fs.install(&again, gone + s(2));
    assert_eq!(table.ct.lock()[&kernel::ct_entry(&peer).expect("tcp")], (0, Duration::ZERO));
    // The datapath's LRU evicted it: its replies miss, and the reply
    // simulated (a split that found it) puts it back.
    table.ct.lock().clear();
    let split = Some(midonet_sim::Split {
        kind: NatKind::Snat,
        tracker: peer.tracker,
        conntrack: Some(peer),
        mask: midonet_sim::FlowMask::empty(),
        tags: Vec::new(),
        key: midonet_sim::FlowKey::default(),
        restore: midonet_sim::Actions::new(),
    });
    let reply = SimResult { split, ..SimResult::default() };
    fs.apply(&reply, &[], ACK, gone + s(3), &mut send, &mut stale);
    assert!(table.ct_holds(&peer), "back in the datapath's table");
}

/// A peer's binding whose replies the datapath translates stays while
/// they come, however long ago its connection's FIN was: the FIN closes
/// it once (120 s from then), and every later round that sees it used
/// gives it that lifetime again (the flags stay in the table; acting on
/// them every round pinned it to the first FIN, and a client reusing the
/// 5-tuple lost its replies at the gateway two minutes later). An RST
/// after it shortens it once more; an idle one goes.
#[test]
fn replies_keep_a_closed_binding_alive_and_its_flags_act_once() {
    use midonet_flow::key::tcp_flags::{FIN, RST};
    use midonet_state::{NatBinding, NatKey, NatKind, Timeouts};
    let s = Duration::from_secs;
    let table = Arc::new(MemRevNat::default());
    let mut fs = FlowState::new(100, 1);
    fs.set_rev_nat(table.clone(), s(1));
    let key = NatKey::new(NatKind::Snat, key(1000));
    let b = NatBinding { ip: Ipv4Addr::new(192, 0, 2, 1), port: 1030 };
    let msg = FlowStateRepr { nat: vec![nat_repr(&key, b)], ..FlowStateRepr::default() };
    fs.install(&msg, s(1));
    let e = kernel::entry(&key, b, false).expect("tcp snat");
    assert!(table.entries.lock().contains_key(&e.key), "written to the table");
    let window = s(6);

    table.reply(&e, ACK | FIN, s(10));
    assert_eq!(fs.refresh_from_kernel(window, s(10)), (0, 1), "the FIN closes it");
    let closing = Timeouts::default().tcp_closing;
    // The client reuses the 5-tuple: replies keep coming, FIN still set.
    let mut at = s(10);
    while at < s(10) + closing * 3 {
        at += s(5);
        table.reply(&e, ACK, at);
        assert_eq!(
            fs.refresh_from_kernel(window, at),
            (1, 0),
            "refreshed at {at:?}, not closed again"
        );
    }
    assert_eq!(
        fs.nat.get(&key, at + closing - s(1)),
        Some(b),
        "alive for 120 s after its last use"
    );
    table.reply(&e, RST, at + s(5));
    assert_eq!(fs.refresh_from_kernel(window, at + s(5)), (0, 1), "a new RST closes it again");
    // A copy (this host did not allocate it): an RST in its replies gives
    // it FIN's 120 s, not 10 s, since its owner saw no RST and its flow
    // may carry the client's next connection on this 5-tuple.
    let rst = at + s(5);
    assert_eq!(fs.nat.get(&key, rst + s(60)), Some(b), "outlives the owner's idle flow");
    assert_eq!(fs.nat.get(&key, rst + closing + s(1)), None);
    // Its owner sends it again (a client reused the 5-tuple): open again,
    // and kept for an established connection's time. (mdp_state writes
    // the entry afresh as the message arrives, flags cleared.)
    table.entries.lock().get_mut(&e.key).expect("held").1 = 0;
    fs.install(&msg, rst + s(1));
    assert_eq!(fs.nat.get(&key, rst + closing + s(60)), Some(b), "no longer closing");
    table.reply(&e, ACK, rst + s(2));
    assert_eq!(fs.refresh_from_kernel(window, rst + s(2)), (1, 0), "acted on flags stay acted on");
}
