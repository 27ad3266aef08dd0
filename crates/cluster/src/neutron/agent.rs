//! `GET /v2.0/agents`: the hosts that run a midonet agent, shown as
//! Neutron agents (`openstack network agent list`). One agent per host,
//! of type `MidoNet Agent` as networking-midonet reported it; `alive` is
//! the agent's session with the cluster, and `configurations.datapath` the
//! datapath provider that session registered. Admin only, as Neutron's policy:
//! a member's list is empty and a member's show is a 404. Read-only: an
//! agent is registered by the agent itself, never through this API.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use midonet_model::Host;
use serde_json::{json, Value};

use super::error::{NResult, NeutronError};
use super::NCtx;
use crate::api::kinds;
use crate::db::{self, Tx};

const AGENT_TYPE: &str = "MidoNet Agent";
const BINARY: &str = "midonet-agent";

fn not_found(id: &str) -> NeutronError {
    NeutronError::not_found("AgentNotFound", "Agent", id)
}

async fn agent_json(tx: &mut Tx, h: &Host) -> NResult<Value> {
    let session = tx.get_raw(&db::host_alive_key(h.id.uuid())).await?;
    let alive = session.is_some();
    let mut configurations = json!({"addresses": h.addresses});
    if let Some(d) = session.as_deref().and_then(db::registered_datapath) {
        configurations["datapath"] = json!(d);
    }
    let host = if h.name.is_empty() { h.id.to_string() } else { h.name.clone() };
    Ok(json!({
        "id": h.id.to_string(),
        "agent_type": AGENT_TYPE,
        "binary": BINARY,
        "host": host,
        "topic": "N/A",
        "alive": alive,
        "admin_state_up": true,
        "availability_zone": null,
        "description": null,
        "configurations": configurations,
        "resources_synced": null,
    }))
}

pub async fn list(ctx: NCtx) -> NResult<Response> {
    let mut items = Vec::new();
    if ctx.is_admin() {
        let mut tx = ctx.tx();
        for h in kinds::all::<Host>(&mut tx).await? {
            items.push(agent_json(&mut tx, &h).await?);
        }
    }
    super::list(&ctx, "agents", "agents", items)
}

pub async fn show(ctx: NCtx, Path(id): Path<String>) -> NResult<Response> {
    if !ctx.is_admin() {
        return Err(not_found(&id));
    }
    let mut tx = ctx.tx();
    let host = kinds::all::<Host>(&mut tx).await?.into_iter().find(|h| h.id.to_string() == id);
    let Some(h) = host else { return Err(not_found(&id)) };
    let v = agent_json(&mut tx, &h).await?;
    Ok(super::one(&ctx, StatusCode::OK, "agent", v))
}
