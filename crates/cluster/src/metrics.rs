//! Prometheus metrics of the cluster, served as text at `/metrics`.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `midonet_api_requests_total` | method, route, status | REST requests answered |
//! | `midonet_api_request_duration_seconds` | method, route | latency histogram |
//! | `midonet_store_txn_commits_total` | | write transactions committed |
//! | `midonet_store_txn_conflicts_total` | | commits whose compares failed (retried) |
//! | `midonet_store_txn_aborts_total` | | writes given up after the last retry (409) |
//! | `midonet_grpc_refused_total` | rpc, reason | agent calls refused (no or bad credential, another host's objects) |
//!
//! `route` is the matched route template (`/midonet-api/bridges/{id}`), never
//! the raw path, so the label set stays bounded.

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// All metrics of one cluster process.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    commits: Counter,
    conflicts: Counter,
    aborts: Counter,
    refused: Refused,
}

/// Agent calls the topology service refused, by call and reason. A clone
/// counts into the same series.
#[derive(Clone, Default)]
pub struct Refused(Family<Labels, Counter>);

impl Refused {
    pub fn inc(&self, rpc: &str, reason: &str) {
        let labels =
            vec![("rpc".to_string(), rpc.to_string()), ("reason".to_string(), reason.to_string())];
        self.0.get_or_create(&labels).inc();
    }

    /// The count for one call and reason.
    pub fn get(&self, rpc: &str, reason: &str) -> u64 {
        let labels =
            vec![("rpc".to_string(), rpc.to_string()), ("reason".to_string(), reason.to_string())];
        self.0.get_or_create(&labels).get()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("midonet");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 100 µs .. ~6.5 s
            Histogram::new(exponential_buckets(0.0001, 2.0, 17))
        });
        let commits = Counter::default();
        let conflicts = Counter::default();
        let aborts = Counter::default();
        registry.register("api_requests", "REST requests answered", requests.clone());
        registry.register("api_request_duration_seconds", "REST request latency", latency.clone());
        registry.register("store_txn_commits", "write transactions committed", commits.clone());
        registry.register(
            "store_txn_conflicts",
            "write transactions whose compares failed and were retried",
            conflicts.clone(),
        );
        registry.register(
            "store_txn_aborts",
            "writes abandoned after the last retry (answered 409)",
            aborts.clone(),
        );
        let refused = Refused::default();
        registry.register(
            "grpc_refused",
            "agent calls refused: no or bad credential, or another host's objects",
            refused.0.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            commits,
            conflicts,
            aborts,
            refused,
        }
    }

    /// The refusal counter the topology service counts into.
    pub fn refused(&self) -> Refused {
        self.refused.clone()
    }

    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let base = vec![
            ("method".to_string(), method.to_string()),
            ("route".to_string(), route.to_string()),
        ];
        self.latency.get_or_create(&base).observe(seconds);
        let mut with_status = base;
        with_status.push(("status".to_string(), status.to_string()));
        self.requests.get_or_create(&with_status).inc();
    }

    pub fn txn_commit(&self) {
        self.commits.inc();
    }
    pub fn txn_conflict(&self) {
        self.conflicts.inc();
    }
    pub fn txn_abort(&self) {
        self.aborts.inc();
    }
    pub fn conflicts(&self) -> u64 {
        self.conflicts.get()
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every recording method of [`Metrics`] is called somewhere else in the
    /// crate (Firecracker's habit): a declared series that nothing updates
    /// would read as "never happened" forever.
    #[test]
    fn every_recording_method_has_a_call_site() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut others = String::new();
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("metrics.rs")
                {
                    others.push_str(&std::fs::read_to_string(&path).expect("read source"));
                }
            }
        }
        let recorders: Vec<&str> = include_str!("metrics.rs")
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub fn "))
            .filter_map(|l| l.split_once('(').map(|(name, _)| name))
            .filter(|name| !matches!(*name, "new" | "render" | "conflicts" | "get"))
            .collect();
        assert_eq!(
            recorders,
            ["inc", "refused", "request", "txn_commit", "txn_conflict", "txn_abort"]
        );
        for r in recorders {
            assert!(others.contains(&format!(".{r}(")), "Metrics::{r} is never called");
        }
    }

    #[test]
    fn every_declared_metric_is_exposed_after_use() {
        let m = Metrics::new();
        m.request("GET", "/midonet-api/bridges", 200, 0.001);
        m.txn_commit();
        m.txn_conflict();
        m.txn_abort();
        m.refused().inc("PublishMac", "port_not_on_bridge");
        let text = m.render();
        for name in [
            "midonet_api_requests_total",
            "midonet_api_request_duration_seconds_bucket",
            "midonet_grpc_refused_total",
            "midonet_store_txn_commits_total 1",
            "midonet_store_txn_conflicts_total 1",
            "midonet_store_txn_aborts_total 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
        assert!(text.contains("route=\"/midonet-api/bridges\""));
    }
}
