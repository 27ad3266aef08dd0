//! Chains: rules in order, jumps, and what a verdict does to the packet.
//!
//! Semantics (MidoNet's): rules are evaluated in order; a
//! chain that ends without a decisive result accepts; `jump` evaluates the
//! target inline and continues after it on `return` or when the target
//! ends; a jump to a missing chain, to a chain already entered in this
//! evaluation (a cycle), or beyond `MAX_JUMPS` is ignored. NAT rules
//! rewrite and then do their `flowAction` (accept, continue or return).
//! Conditions are in `condition.rs`.
//!
//! The jump stack is a fixed array: no allocation per evaluation.

use midonet_model::{ChainId, FlowAction, PortId};
use midonet_wire::IcmpError;

use super::nat::NatOutcome;
use super::{Ctx, Sim, ETH_IPV4, F_IP_DST, F_IP_SRC};
use crate::result::*;
use crate::snapshot::{Dev, RuleAct};
use crate::state::{ConntrackView, StateView};
use crate::tag::Tag;
use crate::FragType;

/// Most chains one evaluation may enter through jumps.
const MAX_JUMPS: usize = 32;

pub(super) enum Verdict {
    Accept,
    Drop,
    Reject,
    /// A NAT rule could not make a binding.
    NatFail(DropReason),
    Redirect {
        port: PortId,
        ingress: bool,
        fail_open: bool,
    },
}

pub(super) enum Flow {
    Continue,
    Return,
    Done(Verdict),
}

fn act_text(a: &RuleAct) -> String {
    match a {
        RuleAct::Accept => "accept".into(),
        RuleAct::Drop => "drop".into(),
        RuleAct::Reject => "reject".into(),
        RuleAct::Return => "return".into(),
        RuleAct::Jump(c) => format!("jump to {c}"),
        RuleAct::StaticNat { dnat, to, then } => {
            format!(
                "{} to {to} then {}",
                if *dnat { "static dnat" } else { "static snat" },
                then.as_str()
            )
        }
        RuleAct::DynamicNat { dnat, targets, then } => {
            let ts: Vec<String> = targets
                .iter()
                .map(|t| format!("{}-{}:{}-{}", t.ip_from, t.ip_to, t.port_from, t.port_to))
                .collect();
            format!(
                "{} to {} then {}",
                if *dnat { "dnat" } else { "snat" },
                ts.join(","),
                then.as_str()
            )
        }
        RuleAct::RevNat { dnat, then } => {
            format!("{} then {}", if *dnat { "rev_dnat" } else { "rev_snat" }, then.as_str())
        }
        RuleAct::L2 { pop, push } => format!("l2_transform pop={pop} push={push:?}"),
        RuleAct::Redirect { port, ingress, .. } => {
            format!("redirect to {port} {}", if *ingress { "ingress" } else { "egress" })
        }
    }
}

impl<S: StateView + ?Sized, C: ConntrackView + ?Sized> Sim<'_, '_, S, C> {
    pub(super) fn run_chain(&mut self, id: Option<ChainId>, hook: Hook, ctx: Ctx) -> Verdict {
        let Some(id) = id else { return Verdict::Accept };
        let mut visited = [ChainId::nil(); MAX_JUMPS];
        let mut n = 0;
        let r = match self.eval(id, hook, ctx, &mut visited, &mut n) {
            Flow::Done(v) => v,
            Flow::Continue | Flow::Return => Verdict::Accept,
        };
        trace!(
            self,
            TraceStep::ChainResult {
                chain: id,
                result: match &r {
                    Verdict::Accept => "accept".into(),
                    Verdict::Drop => "drop".into(),
                    Verdict::Reject => "reject".into(),
                    Verdict::NatFail(r) => format!("drop ({})", r.as_str()),
                    Verdict::Redirect { port, .. } => format!("redirect to {port}"),
                }
            }
        );
        r
    }

    fn eval(
        &mut self,
        id: ChainId,
        hook: Hook,
        ctx: Ctx,
        visited: &mut [ChainId; MAX_JUMPS],
        n: &mut usize,
    ) -> Flow {
        let snap = self.snap;
        self.tag(Tag::chain(id));
        let Some(chain) = snap.chains.get(&id) else { return Flow::Continue };
        // A jump to a chain already entered in this evaluation is ignored
        // (cycle protection), as is one beyond the jump limit.
        if visited[..*n].contains(&id) || *n >= MAX_JUMPS {
            return Flow::Continue;
        }
        visited[*n] = id;
        *n += 1;
        trace!(self, TraceStep::Chain { hook, chain: id, name: chain.name.clone() });
        for (i, rule) in chain.rules.iter().enumerate() {
            if !self.matches(&rule.cond, ctx) {
                continue;
            }
            trace!(
                self,
                TraceStep::Rule {
                    chain: id,
                    index: i + 1,
                    rule: rule.id,
                    action: act_text(&rule.act)
                }
            );
            let then = match &rule.act {
                RuleAct::Accept => return Flow::Done(Verdict::Accept),
                RuleAct::Drop => return Flow::Done(Verdict::Drop),
                RuleAct::Reject => return Flow::Done(Verdict::Reject),
                RuleAct::Return => return Flow::Return,
                RuleAct::Jump(t) => match self.eval(*t, Hook::Jump, ctx, visited, n) {
                    Flow::Done(v) => return Flow::Done(v),
                    Flow::Continue | Flow::Return => continue,
                },
                RuleAct::DynamicNat { dnat, targets, then } => {
                    // Any NAT rule after a split point cancels the split
                    // (`engine::nat`).
                    self.cancel_split();
                    match self.nat_forward(*dnat, targets, ctx.dev.id()) {
                        NatOutcome::Applied => *then,
                        NatOutcome::Skipped => continue,
                        NatOutcome::Failed(r) => return Flow::Done(Verdict::NatFail(r)),
                    }
                }
                RuleAct::StaticNat { dnat, to, then } => {
                    self.cancel_split();
                    if self.fm.ethertype() != ETH_IPV4 {
                        continue;
                    }
                    if *dnat {
                        self.fm.set_ipv4_dst(*to);
                        self.dirty |= F_IP_DST;
                        self.dst_rewritten = true;
                        trace!(self, TraceStep::Rewrite { what: format!("ip4.dst={to}") });
                    } else {
                        self.fm.set_ipv4_src(*to);
                        self.dirty |= F_IP_SRC;
                        trace!(self, TraceStep::Rewrite { what: format!("ip4.src={to}") });
                    }
                    *then
                }
                RuleAct::RevNat { dnat, then } => {
                    self.cancel_split();
                    if self.fm.ethertype() != ETH_IPV4 {
                        continue;
                    }
                    // Static reverse maps first, then dynamic bindings
                    // (`engine::nat`); neither: the next rule.
                    if self.rev_static(*dnat) || self.nat_reverse(*dnat, ctx.dev.id()) {
                        *then
                    } else {
                        continue;
                    }
                }
                RuleAct::L2 { pop, push } => {
                    self.l2(*pop, *push);
                    continue;
                }
                RuleAct::Redirect { port, ingress, fail_open, pop, push } => {
                    self.l2(*pop, *push);
                    return Flow::Done(Verdict::Redirect {
                        port: *port,
                        ingress: *ingress,
                        fail_open: *fail_open,
                    });
                }
            };
            match then {
                FlowAction::Accept => return Flow::Done(Verdict::Accept),
                FlowAction::Continue => continue,
                FlowAction::Return => return Flow::Return,
            }
        }
        Flow::Continue
    }

    /// A reverse NAT rule's static part (floating IPs): restore the
    /// address a static rule translated, if the packet shows one.
    fn rev_static(&mut self, dnat: bool) -> bool {
        let snap = self.snap;
        self.tag(Tag::static_nat());
        if dnat {
            let src = self.fm.ipv4_src();
            let Some(orig) = snap.rev_dnat.get(&src) else { return false };
            self.fm.set_ipv4_src(*orig);
            self.dirty |= F_IP_SRC;
            trace!(
                self,
                TraceStep::Rewrite { what: format!("ip4.src={orig} (reverse static dnat)") }
            );
        } else {
            let dst = self.fm.ipv4_dst();
            let Some(orig) = snap.rev_snat.get(&dst) else { return false };
            self.fm.set_ipv4_dst(*orig);
            self.dirty |= F_IP_DST;
            self.dst_rewritten = true;
            trace!(
                self,
                TraceStep::Rewrite { what: format!("ip4.dst={orig} (reverse static snat)") }
            );
        }
        true
    }

    pub(super) fn l2(&mut self, pop: bool, push: Option<u16>) {
        if pop {
            if let Some(v) = self.fm.vlan_vid() {
                self.fm.set_vlan(None);
                trace!(self, TraceStep::VlanPop { vlan: v });
            }
        }
        if let Some(v) = push {
            let _ = (self.fm.vlan_vid(), self.fm.vlan_pcp());
            self.fm.set_vlan(Some((v, 0)));
            trace!(self, TraceStep::VlanPush { vlan: v });
        }
    }

    /// Apply a chain verdict; true to continue the pipeline.
    pub(super) fn verdict(&mut self, v: Verdict, ctx: Ctx) -> bool {
        match v {
            Verdict::Accept => true,
            Verdict::Drop => {
                // A router dropping the first fragment of a datagram by rule
                // says so with frag-needed, as MidoNet's router does.
                if matches!(ctx.dev, Dev::Router(_))
                    && self.fm.ethertype() == ETH_IPV4
                    && self.fm.ip_frag() == FragType::First
                {
                    let pre = self.pre;
                    self.icmp_error(ctx.in_port, IcmpError::FragNeeded { next_hop_mtu: 0 }, &pre);
                }
                self.drop_pkt(DropReason::RuleDrop);
                false
            }
            Verdict::Reject => {
                if matches!(ctx.dev, Dev::Router(_)) {
                    let pre = self.pre;
                    self.icmp_error(ctx.in_port, IcmpError::AdminProhibited, &pre);
                }
                self.drop_pkt(DropReason::RuleReject);
                false
            }
            Verdict::NatFail(r) => {
                self.drop_pkt(r);
                false
            }
            Verdict::Redirect { port, ingress, fail_open } => {
                let snap = self.snap;
                self.tag(Tag::port(port));
                let target = snap.ports.get(&port).filter(|p| p.admin_up);
                let Some(tp) = target else {
                    if fail_open {
                        return true;
                    }
                    self.drop_pkt(DropReason::RedirectTargetDown);
                    return false;
                };
                trace!(self, TraceStep::Redirect { port, ingress });
                if ingress {
                    self.port_ingress(port);
                } else {
                    self.emit_from(tp);
                }
                false
            }
        }
    }
}
