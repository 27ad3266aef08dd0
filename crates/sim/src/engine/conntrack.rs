//! Connection tracking: `matchForwardFlow` / `matchReturnFlow`
//! (MidoNet's `ConnTrackState`, reference §2.11).
//!
//! ```text
//!  first condition that asks ─> key = original packet @ ingress port's device
//!                               tracked(key reversed)? ─ yes: return flow
//!                                                      └ no:  forward flow
//!                               tag conntrack(key reversed); cache the answer
//!  output on an exterior port ─> forward flow that asked? record the forward
//!                               key = packet as it leaves @ egress port's device
//!                               (tag it too) in SimResult::conntrack
//! ```
//!
//! * **Lazy**: nothing is looked up unless a rule condition asks, and the
//!   answer is computed once per simulation. Only then is the 5-tuple
//!   marked in the mask (a flow that never asked stays wide).
//! * **Which device tracks**: the lookup uses the device of the port the
//!   packet entered the topology by; the recorded key the device of the
//!   exterior port it leaves by. A reply enters at that port, so its lookup
//!   finds the key; using devices rather than ports keeps asymmetric paths
//!   (another port of the same router) and floods working. A stateful port
//!   group decides who *receives* the state (replication), not the key.
//! * **What is tracked**: IPv4 TCP, UDP and ICMP echo (id in both port
//!   fields), not later fragments. Everything else always counts as a
//!   forward flow and records nothing (MidoNet: "anything else always
//!   counts as forward"; ICMP errors included: they carry no id).
//! * **ICMP echo** is keyed by its id, not its type (MidoNet's key): while
//!   a VM pings X with id 7, an echo *request* from X with id 7 also
//!   counts as return traffic. The kernel keys on the type too; MidoNet's
//!   semantics are kept here.
//! * **Generated packets** (a router's echo replies and ICMP errors)
//!   count as return flows, as in MidoNet.
//! * **Tags**: the lookup tags the flow with the forward key it looked for
//!   ([`Tag::conntrack`]), so when that connection is tracked (a state
//!   message arrives after the reply was simulated) or expires, the flow is
//!   simulated again. A recording tags the flow with the key it records, so
//!   expiry of the state also re-simulates the forward flow, which records
//!   it again.
//!
//! The caller applies [`SimResult::conntrack`](crate::SimResult::conntrack)
//! to its `midonet_state::ConnTable` (`track(key, tcp_flags, now)`) and
//! replicates it; mirror copies record nothing. Applying a *new* key
//! invalidates `Tag::conntrack(key)`; the flow that recorded it carries
//! that tag too, so the caller invalidates before installing that flow
//! (or skips its own flow), else the first packet's flow is removed at
//! once and the second packet is simulated again (harmless, one extra
//! simulation: the key then exists and nothing is invalidated).

use midonet_flow::key::{IP_PROTO_TCP, IP_PROTO_UDP};
use midonet_state::{ConnKey, TrackerId};
use midonet_wire::icmp::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST};

use super::{Sim, ETH_IPV4, PROTO_ICMP};
use crate::result::{ConnWrite, TraceStep};
use crate::state::{ConntrackView, StateView};
use crate::tag::Tag;
use crate::FragType;

/// The conntrack answer of one simulation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum CtState {
    /// Not asked yet.
    Unasked,
    /// Asked; the packet is not trackable (counts as forward, records nothing).
    Untracked,
    /// Asked: a forward flow (records its key on output).
    Forward,
    /// Asked: return traffic of a tracked connection.
    Return,
}

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    /// Whether the packet is return traffic, for a rule condition.
    pub(super) fn is_return_flow(&mut self) -> bool {
        if self.generating {
            return true;
        }
        if self.ct_state == CtState::Unasked {
            self.ct_state = self.conntrack_lookup();
        }
        self.ct_state == CtState::Return
    }

    /// Read (and mark) the fields of the connection key and look it up.
    ///
    /// Behind a live split point (a TCP or UDP reply the reverse NAT
    /// restored, `engine::nat`) the lookup may become the datapath's: the
    /// key is the packet as it *entered*, which the first half sees, at the
    /// ingress port's device, which the first half's in-port fixes. So a
    /// lookup that finds the connection leaves the 5-tuple out of the
    /// second half's mask and asks the datapath to find the same
    /// connection tracked before it takes the second half
    /// ([`Split::conntrack`](crate::Split::conntrack)); one that does not
    /// find it cancels the split.
    fn conntrack_lookup(&mut self) -> CtState {
        self.stateful = true;
        let Some(key) = self.conn_key() else {
            self.cancel_split();
            self.mark_conn_key();
            return CtState::Untracked;
        };
        let fwd = key.reversed();
        let tag = Tag::conntrack(&fwd);
        self.tag(tag);
        let ret = self.ct.tracked(&fwd, self.inp.now);
        trace!(self, TraceStep::Conntrack { key, ret });
        if ret && self.split_conntrack(fwd, tag) {
            return CtState::Return;
        }
        self.cancel_split();
        self.mark_conn_key();
        if ret {
            CtState::Return
        } else {
            CtState::Forward
        }
    }

    /// The packet's connection key, if it is trackable: the packet as it
    /// entered, at the ingress port's device. Reads (and marks) only what
    /// decides whether it is: ethertype, fragment, protocol, ICMP type.
    fn conn_key(&mut self) -> Option<ConnKey> {
        if self.fm.ethertype() != ETH_IPV4 || self.fm.ip_frag() == FragType::Later {
            return None;
        }
        match self.fm.ip_proto() {
            IP_PROTO_TCP | IP_PROTO_UDP => {}
            PROTO_ICMP if matches!(self.fm.icmp_type(), ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) => {}
            _ => return None,
        }
        let dev = self.snap.ports.get(&self.inp.ingress)?.dev.id();
        ConnKey::from_flow(&self.inp.key, TrackerId::from(dev))
    }

    /// Mark the fields a connection key reads (as the lookup reads them).
    fn mark_conn_key(&mut self) {
        if self.fm.ethertype() != ETH_IPV4 || self.fm.ip_frag() == FragType::Later {
            return;
        }
        let _ = (self.fm.ipv4_src(), self.fm.ipv4_dst());
        match self.fm.ip_proto() {
            IP_PROTO_TCP | IP_PROTO_UDP => {
                let _ = (self.fm.l4_src(), self.fm.l4_dst());
            }
            PROTO_ICMP => {
                if matches!(self.fm.icmp_type(), ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) {
                    let _ = self.fm.icmp_id();
                }
            }
            _ => {}
        }
    }

    /// At output on an exterior port of device `dev`: a forward flow that
    /// asked records its key as it leaves.
    pub(super) fn conntrack_record(&mut self, dev: midonet_model::DeviceId) {
        if self.ct_state != CtState::Forward || self.generating {
            return;
        }
        let cur = self.fm.current();
        let Some(key) = ConnKey::from_flow(cur, TrackerId::from(dev)) else { return };
        let tcp_flags = self.inp.key.tcp_flags;
        if self.out.conntrack.iter().any(|w| w.key == key) {
            return;
        }
        self.tag(Tag::conntrack(&key));
        trace!(self, TraceStep::ConntrackRecord { key });
        self.out.conntrack.push(ConnWrite { key, tcp_flags });
    }
}
