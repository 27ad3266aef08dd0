//! Mirrors: a copy of the packet, as it is at that point, to another port.
//!
//! A mirror is a list of conditions (OR'ed; none means everything) and a
//! target port, attached to a port at four points (pre/post in, pre/post
//! out) or to a device (in, out) as in MidoNet. A match forks
//! the copy (`Sim::fork` with `copy` true): the copy's outputs are kept,
//! everything else it does (drops, state writes, generated packets, ARP
//! waits) is discarded, so a mirror never changes the original's fate —
//! except a loop.
//!
//! The copy leaves through the target port's whole egress, as MidoNet's
//! `ToPortAction` does: its pre-out mirrors, out chain and post-out
//! mirrors, then emit. A mirror counts as a device on the copy's path, so a
//! mirror loop (a port mirrored into itself, a target mirrored back) hits
//! the device limit, and that drops the whole packet (in MidoNet
//! it ends in an error drop).

use midonet_model::MirrorId;

use super::{Ctx, Sim};
use crate::result::*;
use crate::state::{ConntrackView, StateView};
use crate::tag::Tag;

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    pub(super) fn mirrors(&mut self, list: &[MirrorId], point: MirrorPoint, ctx: Ctx) {
        let snap = self.snap;
        for id in list {
            self.tag(Tag::mirror(*id));
            let Some(m) = snap.mirrors.get(id) else { continue };
            let Some(to) = m.to else { continue };
            let hit = m.conds.is_empty() || m.conds.iter().any(|c| self.matches(c, ctx));
            if !hit {
                continue;
            }
            trace!(self, TraceStep::Mirror { point, mirror: m.id, to });
            self.fork(true, |s| {
                if s.traverse(m.id.cast()) {
                    s.port_egress(to, ctx.in_port);
                }
            });
        }
    }
}
