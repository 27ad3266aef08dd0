//! Bridges and routers.

use midonet_model::kind::ObjectKind;
use midonet_model::topology::Stored;
use midonet_model::*;
use serde_json::{Map, Value};

use super::{delete_under, delete_with_rules, link, link_opt, mentioning, Desc, Env, Fut};
use crate::api::ctx::Ctx;
use crate::db::Tx;

kind! {
    Bridge = Desc::new("bridge", "Bridge-v4", Some("bridges"), "bridgeTemplate");
    tenant: tenant_id;
    refs: [
        "inboundFilterId": inbound_filter_id => Chain, Clear;
        "outboundFilterId": outbound_filter_id => Chain, Clear;
        "inboundMirrorIds": inbound_mirror_ids => Mirror, Clear;
        "outboundMirrorIds": outbound_mirror_ids => Mirror, Clear;
    ]

    fn sample() -> Self {
        Bridge {
            name: "br0".into(),
            tenant_id: Some("t1".into()),
            admin_state_up: true,
            ..Default::default()
        }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let dev: DeviceId = self.id.cast();
            for p in mentioning::<Port>(tx, dev.uuid()).await?.into_iter().filter(|p| p.device_id == dev) {
                delete_with_rules(tx, ctx, &p).await?;
            }
            for kind in [
                ObjectKind::DhcpSubnet,
                ObjectKind::DhcpHost,
                ObjectKind::MacTableEntry,
                ObjectKind::ArpTableEntry,
            ] {
                delete_under(tx, kind, self.id.uuid()).await?;
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/bridges/{}", self.id));
        link(m, "ports", format!("{base}/ports"));
        link(m, "peerPorts", format!("{base}/peer_ports"));
        link(m, "dhcpSubnets", format!("{base}/dhcp"));
        link(m, "macTable", format!("{base}/mac_table"));
        link(m, "arpTable", format!("{base}/arp_table"));
        link(m, "vlanMacTableTemplate", format!("{base}/vlans/{{vlanId}}/mac_table"));
        link(m, "macPortTemplate", format!("{base}/mac_table/{{macAddress}}_{{portId}}"));
        link_opt(m, ctx, "inboundFilter", "chains", self.inbound_filter_id);
        link_opt(m, ctx, "outboundFilter", "chains", self.outbound_filter_id);
    }
}

kind! {
    Router = Desc::new("router", "Router-v3", Some("routers"), "routerTemplate");
    tenant: tenant_id;
    refs: [
        "inboundFilterId": inbound_filter_id => Chain, Clear;
        "outboundFilterId": outbound_filter_id => Chain, Clear;
        "forwardChainId": forward_chain_id => Chain, Clear;
        "localRedirectChainId": local_redirect_chain_id => Chain, Clear;
        "loadBalancerId": load_balancer_id => LoadBalancer, Clear;
        "inboundMirrorIds": inbound_mirror_ids => Mirror, Clear;
        "outboundMirrorIds": outbound_mirror_ids => Mirror, Clear;
    ]

    fn sample() -> Self {
        Router {
            name: "rt0".into(),
            tenant_id: Some("t1".into()),
            admin_state_up: true,
            ..Default::default()
        }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(async move {
            let dev: DeviceId = self.id.cast();
            for p in mentioning::<Port>(tx, dev.uuid()).await?.into_iter().filter(|p| p.device_id == dev) {
                delete_with_rules(tx, ctx, &p).await?;
            }
            for rt in mentioning::<Route>(tx, self.id.uuid()).await?.into_iter().filter(|r| r.router_id == self.id) {
                tx.delete(&rt.store_key());
            }
            Ok(())
        })
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        let base = ctx.uri(&format!("/routers/{}", self.id));
        link(m, "ports", format!("{base}/ports"));
        link(m, "peerPorts", format!("{base}/peer_ports"));
        link(m, "routes", format!("{base}/routes"));
        link_opt(m, ctx, "inboundFilter", "chains", self.inbound_filter_id);
        link_opt(m, ctx, "outboundFilter", "chains", self.outbound_filter_id);
        link_opt(m, ctx, "loadBalancer", "load_balancers", self.load_balancer_id);
    }
}
