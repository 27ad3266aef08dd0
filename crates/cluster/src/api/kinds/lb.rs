//! Load balancers, pools, pool members, VIPs and health monitors. The
//! router simulation balances (`sim::engine::lb`); the agents check health
//! and write members' `status` through the topology service.

use midonet_model::kind::ObjectKind;
use midonet_model::*;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{delete_with_rules, key_of, link, link_opt, Desc, Env, Fut};
use crate::api::ctx::Ctx;
use crate::db::Tx;
use crate::error::ApiError;

kind! {
    LoadBalancer = Desc::new(
        "load balancer", "LoadBalancer-v1", Some("loadBalancers"), "loadBalancerTemplate",
    );
    tenant: tenant_id;
    refs: [
        "routerId": router_id => Router, Clear;
    ]

    fn sample() -> Self {
        LoadBalancer { admin_state_up: true, tenant_id: Some("t1".into()), ..Default::default() }
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/load_balancers/{}", self.id));
        link(m, "pools", format!("{base}/pools"));
        link(m, "vips", format!("{base}/vips"));
        link_opt(m, ctx, "router", "routers", self.router_id);
    }
    /// Its health-check port and route go with it (the agents' checker
    /// normally gives them back first; not if it died meanwhile).
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let hc = HealthCheckPort::of(self.id);
            if let Some(p) = tx.get::<Port>(&key_of(ObjectKind::Port, hc.port_id.uuid())).await? {
                delete_with_rules(tx, ctx, &p).await?;
            }
            tx.delete(&key_of(ObjectKind::Route, hc.route_id.uuid()));
            Ok(())
        })
    }
}

kind! {
    Pool = Desc::new("pool", "Pool-v1", Some("pools"), "poolTemplate")
        .under(&[ObjectKind::LoadBalancer]);
    refs: [
        "loadBalancerId": load_balancer_id => LoadBalancer, Restrict;
        "healthMonitorId": health_monitor_id => HealthMonitor, Restrict;
    ]

    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::LoadBalancer, self.load_balancer_id.uuid()))
    }
    fn set_parent(&mut self, _kind: ObjectKind, id: Uuid) {
        self.load_balancer_id = id.into();
    }
    fn child_body(_parent: ObjectKind, id: Uuid, body: &mut Map<String, Value>) {
        body.insert("loadBalancerId".into(), json!(id));
    }
    fn sample() -> Self {
        serde_json::from_value(json!({"loadBalancerId": Uuid::nil()})).expect("sample pool parses")
    }
    fn on_update<'a>(&'a mut self, old: &'a Self, _tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            self.load_balancer_id = old.load_balancer_id;
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/pools/{}", self.id));
        link(m, "poolMembers", format!("{base}/pool_members"));
        link(m, "vips", format!("{base}/vips"));
        link(m, "loadBalancer", ctx.uri(&format!("/load_balancers/{}", self.load_balancer_id)));
        link_opt(m, ctx, "healthMonitor", "health_monitors", self.health_monitor_id);
    }
}

kind! {
    PoolMember = Desc::new(
        "pool member", "PoolMember-v1", Some("poolMembers"), "poolMemberTemplate",
    )
    .under(&[ObjectKind::Pool]);
    refs: [
        "poolId": pool_id => Pool, Cascade;
    ]

    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::Pool, self.pool_id.uuid()))
    }
    fn set_parent(&mut self, _kind: ObjectKind, id: Uuid) {
        self.pool_id = id.into();
    }
    fn child_body(_parent: ObjectKind, id: Uuid, body: &mut Map<String, Value>) {
        body.insert("poolId".into(), json!(id));
    }
    fn sample() -> Self {
        serde_json::from_value(
            json!({"poolId": Uuid::nil(), "address": "10.0.0.10", "protocolPort": 80}),
        )
        .expect("sample member parses")
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "pool", ctx.uri(&format!("/pools/{}", self.pool_id)));
    }
}

kind! {
    Vip = Desc::new("VIP", "VIP-v1", Some("vips"), "vipTemplate")
        .under(&[ObjectKind::LoadBalancer, ObjectKind::Pool]);
    refs: [
        "loadBalancerId": load_balancer_id => LoadBalancer, Restrict;
        "poolId": pool_id => Pool, Restrict;
    ]

    fn parent(&self) -> Option<(ObjectKind, Uuid)> {
        Some((ObjectKind::LoadBalancer, self.load_balancer_id.uuid()))
    }
    fn set_parent(&mut self, kind: ObjectKind, id: Uuid) {
        if kind == ObjectKind::Pool {
            self.pool_id = id.into();
        } else {
            self.load_balancer_id = id.into();
        }
    }
    fn in_parent(&self, kind: ObjectKind, id: Uuid) -> bool {
        match kind {
            ObjectKind::Pool => self.pool_id.uuid() == id,
            _ => self.load_balancer_id.uuid() == id,
        }
    }
    fn child_body(parent: ObjectKind, id: Uuid, body: &mut Map<String, Value>) {
        if parent == ObjectKind::Pool {
            body.insert("poolId".into(), json!(id));
            // Taken from the pool on create (see vip_pool_matches).
            body.entry("loadBalancerId").or_insert(json!(Uuid::nil()));
        } else {
            body.insert("loadBalancerId".into(), json!(id));
        }
    }
    fn sample() -> Self {
        serde_json::from_value(json!({
            "loadBalancerId": Uuid::nil(),
            "poolId": Uuid::nil(),
            "address": "192.0.2.10",
            "protocolPort": 80,
        }))
        .expect("sample vip parses")
    }
    fn on_create<'a>(&'a mut self, tx: &'a mut Tx, ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move { vip_pool_matches(self, tx, ctx).await })
    }
    fn on_update<'a>(&'a mut self, _old: &'a Self, tx: &'a mut Tx, ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move { vip_pool_matches(self, tx, ctx).await })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "pool", ctx.uri(&format!("/pools/{}", self.pool_id)));
        link(m, "loadBalancer", ctx.uri(&format!("/load_balancers/{}", self.load_balancer_id)));
    }
}

/// A VIP's pool must belong to the VIP's load balancer; a VIP created under
/// a pool takes the pool's load balancer. A pool the caller cannot see is
/// "does not exist", and a mismatch names only what the caller sent: the
/// answer never tells a tenant about another tenant's pool or load
/// balancer.
async fn vip_pool_matches(v: &mut Vip, tx: &mut Tx, ctx: &Ctx) -> Result<(), ApiError> {
    let missing = || ApiError::field("poolId", format!("pool {} does not exist", v.pool_id));
    let owner = crate::api::generic::owner_of(tx, ObjectKind::Pool, v.pool_id.uuid()).await?;
    if !owner.is_some_and(|o| ctx.sees(o.as_deref())) {
        return Err(missing());
    }
    let pool: Option<Pool> = tx.get(&key_of(ObjectKind::Pool, v.pool_id.uuid())).await?;
    let Some(pool) = pool else { return Err(missing()) };
    if v.load_balancer_id.is_nil() {
        v.load_balancer_id = pool.load_balancer_id;
    } else if pool.load_balancer_id != v.load_balancer_id {
        return Err(ApiError::field(
            "poolId",
            format!("pool {} is not a pool of load balancer {}", pool.id, v.load_balancer_id),
        ));
    }
    vip_not_the_routers_own(v, tx).await
}

/// The router a load balancer serves: its `routerId`, or the router whose
/// `loadBalancerId` names it (the VIP check here and the health-check
/// port's placement, `crate::lb_checker`).
pub(crate) async fn router_of(
    tx: &mut Tx,
    lb: &LoadBalancer,
) -> Result<Option<RouterId>, ApiError> {
    if let Some(r) = lb.router_id {
        return Ok(Some(r));
    }
    let routers: Vec<Router> = tx.list(&ObjectKind::Router.prefix()).await?;
    Ok(routers.into_iter().find(|r| r.load_balancer_id == Some(lb.id)).map(|r| r.id))
}

/// A VIP may not take an address of its router's own ports: the router
/// answers those itself (ARP, ping), and would stop doing so.
async fn vip_not_the_routers_own(v: &Vip, tx: &mut Tx) -> Result<(), ApiError> {
    let lb: Option<LoadBalancer> =
        tx.get(&key_of(ObjectKind::LoadBalancer, v.load_balancer_id.uuid())).await?;
    let Some(lb) = lb else { return Ok(()) };
    let Some(router) = router_of(tx, &lb).await? else { return Ok(()) };
    let ports: Vec<Port> = tx.list(&ObjectKind::Port.prefix()).await?;
    if ports.iter().any(|p| p.device_id == router.cast() && p.port_address == Some(v.address)) {
        return Err(ApiError::field(
            "address",
            format!("{} is an address of the load balancer's router itself", v.address),
        ));
    }
    Ok(())
}

kind! {
    HealthMonitor = Desc::new(
        "health monitor", "HealthMonitor-v1", Some("healthMonitors"), "healthMonitorTemplate",
    );
    tenant: tenant_id;
    refs: []

    fn sample() -> Self {
        serde_json::from_value(json!({"type": "TCP", "tenantId": "t1"}))
            .expect("sample monitor parses")
    }
}
