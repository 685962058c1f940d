//! Prometheus text-format metrics (`GET /metrics`). Hand-rolled: a few counters and one
//! latency histogram do not justify a metrics framework. Invariant: label values are chosen
//! from fixed sets (route names, status codes, outcome words), never from caller input.
//! Counting a webhook takes no lock (atomics for the latency histogram and for the usual
//! route/status pairs), so webhooks on different cores do not queue for the metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the webhook latency histogram.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    calls_started: AtomicU64,
    signature_failures: AtomicU64,
    audit_failures: AtomicU64,
    audit_refused_calls: AtomicU64,
    store_failures: AtomicU64,
    /// Webhooks answered, for each pair of [`ROUTES`] and [`STATUSES`].
    webhooks: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    /// Webhooks answered with any other route or status.
    other_webhooks: Mutex<BTreeMap<(&'static str, u16), u64>>,
    ended: Mutex<BTreeMap<String, u64>>,
    /// Webhooks per latency bucket (not cumulative; the last one is over every bound).
    latency: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of the latencies, in nanoseconds.
    latency_ns: AtomicU64,
    reloads: Mutex<BTreeMap<&'static str, u64>>,
    circuits: Mutex<Vec<(String, CircuitProbe)>>,
}

/// Reads one backend's circuit-breaker state: 0 closed, 1 open, 2 half-open.
pub struct CircuitProbe(pub Box<dyn Fn() -> u8 + Send + Sync>);

impl std::fmt::Debug for CircuitProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CircuitProbe")
    }
}

/// Routes whose webhooks are counted without a lock (the `route` label of every webhook).
const ROUTES: [&str; 6] = [
    "incoming",
    "digits",
    "timeout",
    "transfer",
    "status",
    "sms_status",
];

/// Statuses counted without a lock: those a webhook's handler answers with (405 and 413 are
/// answered before a webhook is timed, so never counted).
const STATUSES: [u16; 6] = [200, 204, 400, 403, 404, 503];

impl Metrics {
    /// A call started.
    pub fn call_started(&self) {
        self.calls_started.fetch_add(1, Ordering::Relaxed);
    }

    /// A call ended with `outcome` (an outcome word from the flow, or `hangup`).
    pub fn call_ended(&self, outcome: &str) {
        let word = outcome.split('@').next().unwrap_or("other");
        let word = if word.chars().all(|c| c.is_ascii_lowercase() || c == '_') && word.len() <= 32 {
            word
        } else {
            "other"
        };
        if let Ok(mut m) = self.ended.lock() {
            *m.entry(word.to_string()).or_default() += 1;
        }
    }

    /// A webhook signature check failed.
    pub fn signature_failed(&self) {
        self.signature_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Audit records could not be written.
    pub fn audit_failed(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A new call was refused because the audit sink is down.
    pub fn audit_refused_call(&self) {
        self.audit_refused_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The session store (or a call lease) failed or timed out for a webhook.
    pub fn store_failed(&self) {
        self.store_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A webhook was answered.
    pub fn webhook(&self, route: &'static str, status: u16, latency: std::time::Duration) {
        let slot = ROUTES
            .iter()
            .position(|r| *r == route)
            .zip(STATUSES.iter().position(|s| *s == status));
        match slot {
            Some((r, s)) => {
                self.webhooks[r][s].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                if let Ok(mut m) = self.other_webhooks.lock() {
                    *m.entry((route, status)).or_default() += 1;
                }
            }
        }
        let seconds = latency.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A flow reload attempt: `installed`, `refused` or `unchanged`.
    pub fn reload(&self, result: &'static str) {
        if let Ok(mut m) = self.reloads.lock() {
            *m.entry(result).or_default() += 1;
        }
    }

    /// Exports a backend's circuit state as `resetline_backend_circuit_state{backend}`.
    /// `backend` comes from the configuration (a fixed set), never from a caller.
    pub fn circuit(&self, backend: impl Into<String>, probe: CircuitProbe) {
        if let Ok(mut c) = self.circuits.lock() {
            c.push((backend.into(), probe));
        }
    }

    /// The text exposition.
    pub fn render(&self, live_sessions: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP resetline_calls_started_total Calls that reached the engine.\n# TYPE resetline_calls_started_total counter"
        );
        let _ = writeln!(
            out,
            "resetline_calls_started_total {}",
            self.calls_started.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP resetline_calls_ended_total Calls that ended, by outcome.\n# TYPE resetline_calls_ended_total counter"
        );
        if let Ok(m) = self.ended.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "resetline_calls_ended_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP resetline_sessions_live Calls in progress.\n# TYPE resetline_sessions_live gauge\nresetline_sessions_live {live_sessions}"
        );
        let _ = writeln!(
            out,
            "# HELP resetline_signature_failures_total Webhooks refused for a missing or wrong signature.\n# TYPE resetline_signature_failures_total counter"
        );
        let _ = writeln!(
            out,
            "resetline_signature_failures_total {}",
            self.signature_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP resetline_audit_failures_total Audit writes that failed.\n# TYPE resetline_audit_failures_total counter\nresetline_audit_failures_total {}",
            self.audit_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP resetline_audit_refused_calls_total New calls refused because the audit sink was down.\n# TYPE resetline_audit_refused_calls_total counter\nresetline_audit_refused_calls_total {}",
            self.audit_refused_calls.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP resetline_store_failures_total Webhooks the session store failed (unreachable, slow, refused).\n# TYPE resetline_store_failures_total counter\nresetline_store_failures_total {}",
            self.store_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP resetline_webhooks_total Webhooks answered, by route and HTTP status.\n# TYPE resetline_webhooks_total counter"
        );
        let mut webhooks = self
            .other_webhooks
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        for (route, counts) in ROUTES.iter().zip(&self.webhooks) {
            for (status, n) in STATUSES.iter().zip(counts) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    webhooks.insert((route, *status), n);
                }
            }
        }
        for ((route, status), n) in &webhooks {
            let _ = writeln!(
                out,
                "resetline_webhooks_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP resetline_webhook_seconds Time to answer a webhook.\n# TYPE resetline_webhook_seconds histogram"
        );
        let mut below = 0u64;
        for (b, n) in BUCKETS.iter().zip(&self.latency) {
            below += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "resetline_webhook_seconds_bucket{{le=\"{b}\"}} {below}"
            );
        }
        let count = below + self.latency[BUCKETS.len()].load(Ordering::Relaxed);
        let sum = self.latency_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "resetline_webhook_seconds_bucket{{le=\"+Inf\"}} {count}\nresetline_webhook_seconds_sum {sum}\nresetline_webhook_seconds_count {count}"
        );
        let _ = writeln!(
            out,
            "# HELP resetline_flow_reloads_total Flow reload results.\n# TYPE resetline_flow_reloads_total counter"
        );
        if let Ok(m) = self.reloads.lock() {
            for (result, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "resetline_flow_reloads_total{{result=\"{result}\"}} {n}"
                );
            }
        }
        if let Ok(c) = self.circuits.lock()
            && !c.is_empty()
        {
            let _ = writeln!(
                out,
                "# HELP resetline_backend_circuit_state Circuit breaker per backend: 0 closed, 1 open, 2 half-open.\n# TYPE resetline_backend_circuit_state gauge"
            );
            for (backend, probe) in c.iter() {
                let _ = writeln!(
                    out,
                    "resetline_backend_circuit_state{{backend=\"{backend}\"}} {}",
                    (probe.0)()
                );
            }
        }
        out
    }
}

/// The audit retry buffer's figures, in the text format.
pub fn audit_lines(stats: &resetline_engine::AuditStats) -> String {
    format!(
        "# HELP resetline_audit_pending Audit records waiting for a retry (the sink failed).\n# TYPE resetline_audit_pending gauge\nresetline_audit_pending {}\n\
         # HELP resetline_audit_retried_total Audit records written by a retry.\n# TYPE resetline_audit_retried_total counter\nresetline_audit_retried_total {}\n\
         # HELP resetline_audit_dropped_total Audit records dropped because the retry buffer was full.\n# TYPE resetline_audit_dropped_total counter\nresetline_audit_dropped_total {}\n\
         # HELP resetline_audit_write_failures_total Failed audit write attempts, retries included.\n# TYPE resetline_audit_write_failures_total counter\nresetline_audit_write_failures_total {}\n",
        stats.pending, stats.retried, stats.dropped, stats.write_failures
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Metrics;

    #[test]
    fn webhooks_are_counted_by_route_and_status_and_timed_in_cumulative_buckets() {
        let m = Metrics::default();
        m.webhook("digits", 200, Duration::from_micros(300));
        m.webhook("digits", 200, Duration::from_millis(3));
        m.webhook("status", 204, Duration::from_millis(30));
        m.webhook("digits", 418, Duration::from_secs(11)); // outside the lock-free table
        let text = m.render(0);
        for line in [
            "resetline_webhooks_total{route=\"digits\",status=\"200\"} 2",
            "resetline_webhooks_total{route=\"digits\",status=\"418\"} 1",
            "resetline_webhooks_total{route=\"status\",status=\"204\"} 1",
            "resetline_webhook_seconds_bucket{le=\"0.001\"} 1",
            "resetline_webhook_seconds_bucket{le=\"0.0025\"} 1",
            "resetline_webhook_seconds_bucket{le=\"0.005\"} 2",
            "resetline_webhook_seconds_bucket{le=\"0.05\"} 3",
            "resetline_webhook_seconds_bucket{le=\"10\"} 3",
            "resetline_webhook_seconds_bucket{le=\"+Inf\"} 4",
            "resetline_webhook_seconds_count 4",
            "resetline_webhook_seconds_sum 11.0333",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        let digits = text
            .find("route=\"digits\",status=\"200\"")
            .expect("digits");
        let status = text.find("route=\"status\"").expect("status");
        assert!(digits < status, "series in label order");
    }
}
