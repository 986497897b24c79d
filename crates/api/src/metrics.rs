//! Prometheus counters kept in memory: requests by route, method and status, and their
//! cumulative latency. Labels use the route template (`/v1/credentials/{id}`), never the raw
//! path, so IDs do not blow up cardinality.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// (method, route template, status) → (count, cumulative seconds).
type Counters = BTreeMap<(String, String, u16), (u64, f64)>;

/// Request counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<Counters>,
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            let e = m
                .entry((method.to_owned(), route.to_owned(), status))
                .or_insert((0, 0.0));
            e.0 += 1;
            e.1 += seconds;
        }
    }

    /// Renders the Prometheus text format.
    pub fn render(&self, ready: bool) -> String {
        let mut out = String::new();
        out.push_str("# HELP credvault_up Whether the server is running.\n# TYPE credvault_up gauge\ncredvault_up 1\n");
        let _ = writeln!(
            out,
            "# HELP credvault_store_ready Whether the store answered the last readiness probe.\n# TYPE credvault_store_ready gauge\ncredvault_store_ready {}",
            u8::from(ready)
        );
        out.push_str("# HELP credvault_http_requests_total HTTP requests by method, route and status.\n# TYPE credvault_http_requests_total counter\n");
        let snapshot: Vec<_> = match self.requests.lock() {
            Ok(m) => m.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(_) => Vec::new(),
        };
        for ((method, route, status), (n, _)) in &snapshot {
            let _ = writeln!(
                out,
                "credvault_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP credvault_http_request_seconds_sum Cumulative request latency by method, route and status.\n# TYPE credvault_http_request_seconds_sum counter\n");
        for ((method, route, status), (_, s)) in &snapshot {
            let _ = writeln!(
                out,
                "credvault_http_request_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {s:.6}"
            );
        }
        out
    }
}
