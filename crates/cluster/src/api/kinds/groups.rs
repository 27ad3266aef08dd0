//! Port groups, IP address groups and mirrors.

use midonet_model::kind::ObjectKind;
use midonet_model::*;
use serde_json::{Map, Value};

use super::{delete_under, link, link_opt, Desc, Env, Fut};
use crate::api::ctx::Ctx;
use crate::db::Tx;

kind! {
    PortGroup = Desc::new("port group", "PortGroup-v1", Some("portGroups"), "portGroupTemplate");
    tenant: tenant_id;
    refs: []

    fn sample() -> Self {
        PortGroup {
            name: "pg0".into(),
            tenant_id: Some("t1".into()),
            stateful: true,
            ..Default::default()
        }
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "ports", ctx.uri(&format!("/port_groups/{}/ports", self.id)));
    }
}

kind! {
    IpAddrGroup = Desc::new(
        "IP address group", "IpAddrGroup-v1", Some("ipAddrGroups"), "ipAddrGroupTemplate",
    );
    tenant: tenant_id;
    refs: []

    fn sample() -> Self {
        IpAddrGroup { name: "sg0".into(), tenant_id: Some("t1".into()), ..Default::default() }
    }
    fn on_delete<'a>(&'a self, tx: &'a mut Tx, _ctx: &'a Ctx) -> Fut<'a, ()> {
        Box::pin(delete_under(tx, ObjectKind::IpAddrGroupAddr, self.id.uuid()))
    }
    /// The addresses' link is `addrs`, MidoNet 5.x's name for it
    /// (`IpAddrGroup.getAddrs`): midonetclient reads `dto['addrs']`.
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link(m, "addrs", ctx.uri(&format!("/ip_addr_groups/{}/ip_addrs", self.id)));
    }
}

kind! {
    Mirror = Desc::new("mirror", "Mirror-v1", Some("mirrors"), "mirrorTemplate");
    tenant: tenant_id;
    refs: [
        "toPortId": to_port_id => Port, Restrict;
    ]

    fn sample() -> Self {
        Mirror {
            to_port_id: Some(PortId::nil()),
            tenant_id: Some("t1".into()),
            ..Default::default()
        }
    }
    fn links(&self, ctx: &Ctx, _env: &Env, m: &mut Map<String, Value>) {
        link_opt(m, ctx, "toPort", "ports", self.to_port_id);
    }
}
