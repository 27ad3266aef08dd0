//! Chains and their rules.

use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{all, key_of, link, mentioning, Desc, Env, Fut, GET_DELETE};
use crate::api::ctx::Ctx;
use crate::db::Tx;
use crate::error::ApiError;

kind! {
    Chain = Desc::new("chain", "Chain-v1", Some("chains"), "chainTemplate");
    tenant: tenant_id;
    refs: []

    fn sample() -> Self {
        Chain { name: "ch0".into(), tenant_id: Some("t1".into()), ..Default::default() }
    }
    fn on_create<'a>(&'a mut self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            // Rules are added through /chains/{id}/rules.
            self.rule_ids.clear();
            Ok(())
        })
    }
    fn on_update<'a>(&'a mut self, old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            self.rule_ids = old.rule_ids.clone();
            Ok(())
        })
    }
    /// Deletes the chain's own rules (before the reference rules run, so a
    /// jump among them does not hold the chain).
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            for rule in mentioning::<Rule>(tx, self.id.uuid()).await? {
                if rule.chain_id == self.id || self.rule_ids.contains(&rule.id) {
                    tx.delete(&rule.store_key());
                }
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "rules", ctx.uri(&format!("/chains/{}/rules", self.id)));
    }
}

kind! {
    Rule = Desc::new("rule", "Rule-v2", None, "ruleTemplate")
        .verbs(GET_DELETE)
        .under(&[ObjectKind::Chain]);
    refs: [
        "jumpChainId": jump_chain_id => Chain, Restrict;
        "portGroup": condition.port_group => PortGroup, Restrict;
        "inPortGroup": condition.in_port_group => PortGroup, Restrict;
        "outPortGroup": condition.out_port_group => PortGroup, Restrict;
        "ipAddrGroupSrc": condition.ip_addr_group_src => IpAddrGroup, Restrict;
        "ipAddrGroupDst": condition.ip_addr_group_dst => IpAddrGroup, Restrict;
        "targetPortId": target_port_id => Port, Restrict;
    ]

    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::Chain, self.chain_id.uuid()))
    }
    fn set_parent(&mut self, _kind: ObjectKind, id: Uuid) {
        self.chain_id = id.into();
    }
    fn sample() -> Self {
        let mut r = Rule { rule_type: RuleType::Accept, position: Some(1), ..Default::default() };
        r.condition.nw_proto = Some(6);
        r.condition.tp_dst = Some(PortRange { start: 22, end: 22 });
        r
    }
    fn on_create<'a>(&'a mut self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let ckey = key_of(ObjectKind::Chain, self.chain_id.uuid());
            let mut chain: Chain = tx
                .get(&ckey)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("chain {}", self.chain_id)))?;
            let len = chain.rule_ids.len();
            let pos = self.position.unwrap_or(1) as usize;
            if pos == 0 || pos > len + 1 {
                return Err(ApiError::field(
                    "position",
                    format!("position {pos} is out of range 1..={} for this chain", len + 1),
                ));
            }
            chain.rule_ids.insert(pos - 1, self.id);
            tx.put(&ckey, &chain);
            self.position = None;
            if let Some(j) = self.jump_chain_id {
                if let Some(jc) = tx.get::<Chain>(&key_of(ObjectKind::Chain, j.uuid())).await? {
                    self.jump_chain_name = Some(jc.name);
                }
            }
            Ok(())
        })
    }
    fn on_update<'a>(&'a mut self, _old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async {
            Err(ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "rules cannot be changed; delete and create",
            ))
        })
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let ckey = key_of(ObjectKind::Chain, self.chain_id.uuid());
            if let Some(mut chain) = tx.get::<Chain>(&ckey).await? {
                chain.rule_ids.retain(|r| *r != self.id);
                tx.put(&ckey, &chain);
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, env: &Env, m: &mut Map<String, Value>) {
        link(m, "chain", ctx.uri(&format!("/chains/{}", self.chain_id)));
        if let Some(p) = env.rule_positions.get(&self.id.uuid()) {
            m.insert("position".into(), json!(p));
        }
    }
    fn load_env<'a>(tx: &'a mut Tx, env: &'a mut Env) -> Fut<'a, ()> {
        Box::pin(async move {
            for c in all::<Chain>(tx).await? {
                for (i, r) in c.rule_ids.iter().enumerate() {
                    env.rule_positions.insert(r.uuid(), i as u32 + 1);
                }
            }
            Ok(())
        })
    }
}
