//! Delivery metrics in Prometheus' text format: attempts by outcome, latency,
//! breaker state per host, and the due queue (set by the caller at scrape
//! time from the store, since other processes share the queue).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

/// Every outcome `attempt` is called with; their counters are made once.
const OUTCOMES: [&str; 7] = [
    "succeeded",
    "retry",
    "skipped",
    "failed",
    "gone",
    "refused",
    "deferred",
];

pub struct Metrics {
    registry: Registry,
    attempts: Family<Labels, Counter>,
    /// The counters of [`OUTCOMES`], so counting an attempt allocates no
    /// label set (counters share their value with the family's).
    by_outcome: Vec<(&'static str, Counter)>,
    latency: Histogram,
    breaker: Family<Labels, Gauge>,
    due: Gauge,
    oldest_due_age: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outflow_delivery");
        let attempts = Family::<Labels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let breaker = Family::<Labels, Gauge>::default();
        let due = Gauge::default();
        let oldest_due_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "attempts",
            "Webhook attempts by outcome (succeeded, retry, skipped, failed, gone, refused, deferred)",
            attempts.clone(),
        );
        registry.register(
            "latency_seconds",
            "Time from sending a webhook request to its response",
            latency.clone(),
        );
        registry.register(
            "breaker_state",
            "Circuit breaker per destination host: 0 closed, 1 open, 2 half-open",
            breaker.clone(),
        );
        registry.register(
            "due",
            "Pending deliveries due now (all processes)",
            due.clone(),
        );
        registry.register(
            "oldest_due_age_seconds",
            "How long the oldest due delivery has waited",
            oldest_due_age.clone(),
        );
        let by_outcome = OUTCOMES
            .iter()
            .map(|o| {
                let c = attempts
                    .get_or_create(&vec![("outcome".to_owned(), (*o).to_owned())])
                    .clone();
                (*o, c)
            })
            .collect();
        Self {
            registry,
            attempts,
            by_outcome,
            latency,
            breaker,
            due,
            oldest_due_age,
        }
    }

    pub fn attempt(&self, outcome: &str) {
        if let Some((_, c)) = self.by_outcome.iter().find(|(o, _)| *o == outcome) {
            c.inc();
            return;
        }
        self.attempts
            .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
            .inc();
    }

    pub fn latency(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    pub fn breaker(&self, host: &str, state: i64) {
        self.breaker
            .get_or_create(&vec![("host".to_owned(), host.to_owned())])
            .set(state);
    }

    pub fn queue(&self, due: i64, oldest_age_seconds: f64) {
        self.due.set(due);
        self.oldest_due_age.set(oldest_age_seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::new();
        m.attempt("succeeded");
        m.attempt("succeeded");
        m.latency(0.002);
        m.breaker("example.com:443", 1);
        m.queue(3, 1.5);
        let t = m.encode();
        assert!(
            t.contains("outflow_delivery_attempts_total{outcome=\"succeeded\"} 2"),
            "{t}"
        );
        assert!(t.contains("outflow_delivery_breaker_state{host=\"example.com:443\"} 1"));
        assert!(t.contains("outflow_delivery_due 3"));
        assert!(t.contains("outflow_delivery_oldest_due_age_seconds 1.5"));
        assert!(t.contains("outflow_delivery_latency_seconds_bucket"));
    }
}
