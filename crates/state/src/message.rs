//! Between the tables and flow-state messages (`midonet_wire::flowstate`):
//! what a sender puts in a message and what a receiver installs from one.
//!
//! Receiving is where untrusted input meets the tables, so it is total: an
//! entry with a state or NAT kind this version does not know is skipped
//! and counted, a full table is counted, nothing panics. Installed
//! connections keep the sender's state; bindings get the expiry the caller
//! gives (the connection's timeout, refreshed by later messages and by
//! datapath activity), as MidoNet "touches" received keys (reference §3.2).

use std::time::Duration;

use midonet_wire::flowstate::{
    ConnKeyRepr, ConnStateCode, ConntrackRepr, FlowStateRepr, NatKindCode, NatRepr,
};
use serde::Serialize;
use uuid::Uuid;

use crate::TrackerId;
use crate::{ConnKey, ConnState, ConnTable, NatBinding, NatError, NatKey, NatKind, NatTable};

impl From<&ConnKeyRepr> for ConnKey {
    fn from(r: &ConnKeyRepr) -> Self {
        ConnKey {
            src: r.src,
            dst: r.dst,
            src_port: r.src_port,
            dst_port: r.dst_port,
            proto: r.proto,
            tracker: TrackerId(Uuid::from_bytes(r.tracker)),
        }
    }
}

impl From<&ConnKey> for ConnKeyRepr {
    fn from(k: &ConnKey) -> Self {
        ConnKeyRepr {
            tracker: *k.tracker.0.as_bytes(),
            src: k.src,
            dst: k.dst,
            src_port: k.src_port,
            dst_port: k.dst_port,
            proto: k.proto,
        }
    }
}

impl ConnState {
    /// The wire code of a state.
    pub fn code(self) -> ConnStateCode {
        match self {
            ConnState::SynSent => ConnStateCode::SynSent,
            ConnState::New => ConnStateCode::New,
            ConnState::Replied => ConnStateCode::Replied,
            ConnState::Closing => ConnStateCode::Closing,
            ConnState::Closed => ConnStateCode::Closed,
        }
    }

    /// The state of a wire code, if this version knows it.
    pub fn from_code(c: ConnStateCode) -> Option<ConnState> {
        Some(match c {
            ConnStateCode::SynSent => ConnState::SynSent,
            ConnStateCode::New => ConnState::New,
            ConnStateCode::Replied => ConnState::Replied,
            ConnStateCode::Closing => ConnState::Closing,
            ConnStateCode::Closed => ConnState::Closed,
            ConnStateCode::Unknown(_) => return None,
        })
    }
}

impl NatKind {
    /// The wire code of a kind.
    pub fn code(self) -> NatKindCode {
        match self {
            NatKind::Snat => NatKindCode::Snat,
            NatKind::Dnat => NatKindCode::Dnat,
            NatKind::StickyDnat => NatKindCode::StickyDnat,
        }
    }

    /// The kind of a wire code, if this version knows it.
    pub fn from_code(c: NatKindCode) -> Option<NatKind> {
        Some(match c {
            NatKindCode::Snat => NatKind::Snat,
            NatKindCode::Dnat => NatKind::Dnat,
            NatKindCode::StickyDnat => NatKind::StickyDnat,
            NatKindCode::Unknown(_) => return None,
        })
    }
}

/// A connection for a message.
pub fn conntrack_repr(key: &ConnKey, state: ConnState) -> ConntrackRepr {
    ConntrackRepr { key: key.into(), state: state.code() }
}

/// A binding for a message.
pub fn nat_repr(key: &NatKey, b: NatBinding) -> NatRepr {
    NatRepr { key: (&key.conn).into(), kind: key.kind.code(), bound_ip: b.ip, bound_port: b.port }
}

/// What [`install`] did with a message's entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct Installed {
    pub conntrack: u32,
    pub nat: u32,
    /// Entries with a code this version does not know.
    pub unknown: u32,
    /// Entries the tables refused (full, or a binding conflicting with
    /// one this host allocated).
    pub refused: u32,
    /// Live bindings here that a received one replaced (the sender
    /// allocated it and is its authority; see `NatTable::import`).
    pub replaced: u32,
}

/// Install a received message's connections and bindings. Bindings live
/// until `nat_expires` and replace the live ones they disagree with, but
/// for this host's own (`own`; [`NatTable::import`]); the replaced ones are
/// appended to `replaced`.
pub fn install(
    msg: &FlowStateRepr,
    conn: &mut ConnTable,
    nat: &mut NatTable,
    nat_expires: Duration,
    now: Duration,
    own: &dyn Fn(&NatKey, NatBinding) -> bool,
    replaced: &mut Vec<(NatKey, NatBinding)>,
) -> Installed {
    let mut done = Installed::default();
    for c in &msg.conntrack {
        let Some(state) = ConnState::from_code(c.state) else {
            done.unknown += 1;
            continue;
        };
        match conn.import(ConnKey::from(&c.key), state, now) {
            Ok(()) => done.conntrack += 1,
            Err(_) => done.refused += 1,
        }
    }
    for n in &msg.nat {
        let Some(kind) = NatKind::from_code(n.kind) else {
            done.unknown += 1;
            continue;
        };
        let key = NatKey::new(kind, ConnKey::from(&n.key));
        let b = NatBinding { ip: n.bound_ip, port: n.bound_port };
        let before = replaced.len();
        match nat.import(key, b, nat_expires, now, own, replaced) {
            Ok(()) => done.nat += 1,
            Err(NatError::Bound(_) | NatError::ReturnKeyInUse | NatError::Full) => {
                done.refused += 1
            }
        }
        done.replaced += (replaced.len() - before) as u32;
    }
    done
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{proto, ConntrackCfg};

    #[test]
    fn a_sent_message_installs_on_the_receiver() {
        let tracker = TrackerId(Uuid::from_u128(5));
        let k = ConnKey {
            src: Ipv4Addr::new(10, 0, 0, 5),
            dst: Ipv4Addr::new(8, 8, 8, 8),
            src_port: 4000,
            dst_port: 53,
            proto: proto::UDP,
            tracker,
        };
        let nk = NatKey::new(NatKind::Snat, k);
        let b = NatBinding { ip: Ipv4Addr::new(203, 0, 113, 1), port: 1100 };
        let msg = FlowStateRepr {
            conntrack: vec![
                conntrack_repr(&k, ConnState::New),
                ConntrackRepr { key: (&k).into(), state: ConnStateCode::Unknown(42) },
            ],
            nat: vec![nat_repr(&nk, b)],
            ..FlowStateRepr::default()
        };
        let mut bytes = Vec::new();
        msg.emit_vec(&mut bytes).expect("emit");
        let got = FlowStateRepr::parse_bytes(&bytes).expect("parse");

        let now = Duration::from_secs(10);
        let mut ct = ConnTable::new(ConntrackCfg::default(), 1);
        let mut nat = NatTable::new(100, 1);
        let mut replaced = Vec::new();
        let never = |_: &NatKey, _: NatBinding| false;
        let done = install(
            &got,
            &mut ct,
            &mut nat,
            now + Duration::from_secs(30),
            now,
            &never,
            &mut replaced,
        );
        assert_eq!(done, Installed { conntrack: 1, nat: 1, unknown: 1, refused: 0, replaced: 0 });
        assert!(ct.is_return(&k.reversed(), now));
        assert_eq!(
            nat.reverse(NatKind::Snat, &nk.return_key(b), now),
            Some(NatBinding { ip: k.src, port: k.src_port })
        );
    }
}
