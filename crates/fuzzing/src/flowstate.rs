//! `flowstate`: flow-state messages as a receiving agent gets them from a
//! peer (the whole input is the UDP payload).
//!
//! What must hold:
//!
//! * `wire::FlowStateMsg::new_checked` accepts exactly the inputs whose
//!   length is what the header's counts say (checked by an independent
//!   reading of the header here), and rejects a version other than 1 as
//!   `UnknownVersion` before anything else.
//! * a request that is also an answer's end is `BadFlags`;
//! * decode → encode gives the input back byte for byte, but for the
//!   reserved bits and bytes (sent as zero) and an empty learned section
//!   (not sent); the view's slices have the counted lengths.
//! * `state::message::install` puts every entry with a known code into
//!   the tables or counts it refused (a binding may replace an earlier
//!   one that disagrees, and is counted so); afterwards each installed connection
//!   answers as return traffic for its reversed key and each installed
//!   binding reverse-translates its return key.

use std::time::Duration;

use midonet_state::message::install;
use midonet_state::{ConnKey, ConnState, ConnTable, ConntrackCfg, NatKey, NatKind, NatTable};
use midonet_wire::flowstate::{
    FlowStateError, FlowStateMsg, FlowStateRepr, FLAG_ANSWERED, FLAG_LEARNED, FLAG_REQUEST,
    HEADER_SIZE,
};

use crate::check::be16;

pub fn flowstate(data: &[u8]) {
    let parsed = FlowStateRepr::parse_bytes(data);
    // Independent reading of the header.
    let expected = match data.first() {
        None => Err(FlowStateError::Truncated),
        Some(&v) if v != 1 => Err(FlowStateError::UnknownVersion(v)),
        Some(_) if data.len() < HEADER_SIZE => Err(FlowStateError::Truncated),
        Some(_) if data[1] & (FLAG_REQUEST | FLAG_ANSWERED) == FLAG_REQUEST | FLAG_ANSWERED => {
            Err(FlowStateError::BadFlags)
        }
        Some(_) => {
            let mut n = 16 * (usize::from(data[2]) + usize::from(data[3]))
                + 30 * usize::from(be16(data, 4).expect("header"))
                + 36 * usize::from(be16(data, 6).expect("header"));
            let mut short = false;
            if data[1] & FLAG_LEARNED != 0 {
                // The learned section: a 2-byte count, then 46 bytes each.
                match be16(data, HEADER_SIZE + n) {
                    Some(k) => n += 2 + 46 * usize::from(k),
                    None => short = true,
                }
            }
            match (data.len() - HEADER_SIZE).cmp(&n) {
                _ if short => Err(FlowStateError::Truncated),
                std::cmp::Ordering::Less => Err(FlowStateError::Truncated),
                std::cmp::Ordering::Greater => Err(FlowStateError::BadLength),
                std::cmp::Ordering::Equal => Ok(()),
            }
        }
    };
    assert_eq!(
        parsed.as_ref().map(|_| ()),
        expected.as_ref().map(|_| ()),
        "accepts what it should"
    );
    let Ok(repr) = parsed else { return };

    let view = FlowStateMsg::new_checked(data).expect("parsed, so viewable");
    assert_eq!(view.egress_ports.len(), usize::from(data[2]));
    assert_eq!(view.port_groups.len(), usize::from(data[3]));
    assert_eq!(view.conntrack.len(), repr.conntrack.len());
    assert_eq!(view.nat.len(), repr.nat.len());
    assert_eq!(view.learned.len(), repr.learned.len());
    // An empty learned section under its flag is not sent again.
    let empty_section = data[1] & FLAG_LEARNED != 0 && repr.learned.is_empty();
    assert_eq!(repr.buffer_len() + if empty_section { 2 } else { 0 }, data.len());
    let mut again = Vec::new();
    repr.emit_vec(&mut again).expect("a parsed message encodes");
    assert_eq!(again[0], data[0]);
    let flag = if repr.learned.is_empty() { 0 } else { FLAG_LEARNED };
    let purpose = data[1] & (FLAG_REQUEST | FLAG_ANSWERED);
    assert_eq!(again[1], flag | purpose, "reserved flags sent as zero, the purpose kept");
    // The learned entries' reserved byte is sent as zero too.
    let mut want = data[..data.len() - if empty_section { 2 } else { 0 }].to_vec();
    let start = want.len() - 46 * repr.learned.len();
    for i in 0..repr.learned.len() {
        want[start + 46 * i + 1] = 0;
    }
    assert_eq!(again[2..], want[2..], "decode → encode is the input");

    let now = Duration::from_secs(1000);
    let cfg = ConntrackCfg { max_entries: 64, ..ConntrackCfg::default() };
    let mut ct = ConnTable::new(cfg, 1);
    let mut nat = NatTable::new(64, 1);
    let mut replaced = Vec::new();
    let never_own = |_: &NatKey, _: midonet_state::NatBinding| false;
    let done = install(
        &repr,
        &mut ct,
        &mut nat,
        now + Duration::from_secs(60),
        now,
        &never_own,
        &mut replaced,
    );
    assert_eq!(done.replaced as usize, replaced.len());
    let total = repr.conntrack.len() + repr.nat.len();
    assert_eq!((done.conntrack + done.nat + done.unknown + done.refused) as usize, total);
    assert!(ct.len() <= 64 && nat.len() <= 64);
    for c in &repr.conntrack {
        let k = ConnKey::from(&c.key);
        if ConnState::from_code(c.state).is_some() && ct.lookup(&k, now).is_some() {
            assert!(ct.is_return(&k.reversed(), now) || k == k.reversed());
        }
    }
    for n in &repr.nat {
        let Some(kind) = NatKind::from_code(n.kind) else { continue };
        let key = NatKey::new(kind, ConnKey::from(&n.key));
        if let Some(b) = nat.get(&key, now) {
            let ret = key.return_key(b);
            assert_eq!(nat.reverse(kind, &ret, now), Some(key.return_binding()), "{key:?}");
        }
    }
}
