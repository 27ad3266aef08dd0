//! Mirrors: a copy of the packet, as it is at that point, to another port.
//!
//! A mirror is a list of conditions (OR'ed; none means everything) and a
//! target port, attached to a port at four points (pre/post in, pre/post
//! out) or to a device (in, out) — midonet-behaviour §2.13. A match forks
//! the copy (`Sim::fork` with `copy` true): the copy's outputs are kept,
//! everything else it does (drops, state writes, generated packets, ARP
//! waits) is discarded, so a mirror never changes the original's fate.

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
                s.tag(Tag::port(to));
                match snap.ports.get(&to) {
                    Some(tp) if tp.admin_up => s.emit_from(tp),
                    _ => s.drop_pkt(DropReason::UnknownPort),
                }
            });
        }
    }
}
