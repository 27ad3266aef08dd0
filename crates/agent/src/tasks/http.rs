//! The agent's HTTP endpoints, on `metrics_listen`: `GET /metrics`
//! (Prometheus), `GET /flows` (the installed flows, what `midonet flows`
//! shows), `GET /conntrack`, `POST /conntrack/flush[?tracker=]` and
//! `GET /nat` (what `midonet conntrack` and `midonet nat` show).

use std::sync::Arc;

use midonet_datapath::Datapath;
use tokio::sync::watch;

use crate::handler::Shared;

/// The agent's HTTP endpoints: `GET /metrics` (Prometheus) and
/// `GET /flows` (the installed flows as JSON, what `midonet flows` shows).
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    dp: Arc<dyn Datapath>,
    provider: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    use axum::routing::get;
    let (sh, dpm) = (shared.clone(), dp.clone());
    let shared_ct = shared.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (sh, dp) = (sh.clone(), dpm.clone());
                async move {
                    let text = tokio::task::spawn_blocking(move || {
                        if let Ok(s) = dp.stats() {
                            let view = sh.view.load();
                            sh.metrics
                                .observe_dp(&s, |n| view.ingress.get(&n).map(|p| p.to_string()));
                        }
                        sh.metrics.encode()
                    })
                    .await
                    .unwrap_or_default();
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .route(
            "/flows",
            get(move || {
                let (sh, dp) = (shared.clone(), dp.clone());
                async move {
                    let body = tokio::task::spawn_blocking(move || flow_dump(&sh, &*dp, provider))
                        .await
                        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
                    axum::Json(body)
                }
            }),
        );
    let app = app.merge(conntrack_routes(shared_ct));
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "metrics server ended");
    }
}

/// `GET /conntrack[?limit=N]`: the tracked connections (what `midonet
/// conntrack list` shows); `POST /conntrack/flush[?tracker=UUID]`: forget
/// them (all, or one device's), re-simulating the flows that used them;
/// `GET /nat[?limit=N]`: the NAT bindings (`midonet nat list`).
fn conntrack_routes(shared: Arc<Shared>) -> axum::Router {
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    #[derive(serde::Deserialize)]
    struct ListQ {
        limit: Option<usize>,
    }
    #[derive(serde::Deserialize)]
    struct FlushQ {
        tracker: Option<String>,
    }
    let sh = shared.clone();
    axum::Router::new()
        .route(
            "/conntrack",
            get(move |Query(q): Query<ListQ>| {
                let sh = sh.clone();
                async move {
                    let now = sh.epoch.elapsed();
                    let fs = sh.flowstate.lock();
                    let total = fs.conn.len();
                    let rows = fs.list(now, q.limit.unwrap_or(10_000));
                    axum::Json(serde_json::json!({
                        "host": sh.host_id.to_string(),
                        "count": total,
                        "connections": rows,
                    }))
                }
            }),
        )
        .route(
            "/nat",
            get({
                let sh = shared.clone();
                move |Query(q): Query<ListQ>| {
                    let sh = sh.clone();
                    async move {
                        let now = sh.epoch.elapsed();
                        let fs = sh.flowstate.lock();
                        axum::Json(serde_json::json!({
                            "host": sh.host_id.to_string(),
                            "count": fs.nat.len(),
                            "bindings": fs.nat_list(now, q.limit.unwrap_or(10_000)),
                        }))
                    }
                }
            }),
        )
        .route(
            "/conntrack/flush",
            post(move |Query(q): Query<FlushQ>| {
                let sh = shared.clone();
                async move {
                    let tracker = match q.tracker.as_deref().map(uuid::Uuid::parse_str) {
                        None => None,
                        Some(Ok(u)) => Some(midonet_state::TrackerId(u)),
                        Some(Err(_)) => {
                            return (
                                StatusCode::BAD_REQUEST,
                                axum::Json(serde_json::json!({
                                    "error": "tracker: not a UUID"
                                })),
                            )
                        }
                    };
                    let tags = sh.flowstate.lock().flush(tracker, sh.epoch.elapsed());
                    let n = tags.len();
                    if !tags.is_empty() {
                        let _ = sh.stale.send(tags);
                    }
                    (StatusCode::OK, axum::Json(serde_json::json!({ "flushed": n })))
                }
            }),
        )
}

/// The installed flows, busiest first, as `GET /flows` answers: each with
/// its match (the masked key, as `midonet trace` prints a megaflow), its
/// actions, tags, counters, idle time and age, and the virtual port it
/// came in on.
fn flow_dump(shared: &Shared, dp: &dyn Datapath, provider: &str) -> serde_json::Value {
    use midonet_datapath::InPort;
    let mut flows = match dp.dump_flows() {
        Ok(f) => f,
        Err(e) => return serde_json::json!({ "error": e.to_string() }),
    };
    flows.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.id.cmp(&b.id)));
    let view = shared.view.load();
    let rows: Vec<serde_json::Value> = flows
        .iter()
        .map(|f| {
            let port = match f.masked_key.in_port {
                InPort::Port(n) => view.ingress.get(&n).map(|p| p.to_string()),
                InPort::Tunnel(_) => None,
            };
            serde_json::json!({
                "id": f.id,
                "in_port": f.masked_key.in_port.to_string(),
                "port": port,
                "match": f.masked_key.display_masked(&f.mask).to_string(),
                "actions": f.actions.to_string(),
                "tags": f.tags.iter().map(|t| format!("{t:#018x}")).collect::<Vec<_>>(),
                "packets": f.packets,
                "bytes": f.bytes,
                "idle_ms": f.idle_ms,
                "age_ms": f.age_ms,
            })
        })
        .collect();
    serde_json::json!({
        "host": shared.host_id.to_string(),
        "provider": provider,
        "count": rows.len(),
        "flows": rows,
    })
}
