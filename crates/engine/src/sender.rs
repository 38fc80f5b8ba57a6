//! A plain webhook sender: claims pending deliveries in batches, sends them
//! concurrently with one pooled client, and records every outcome (and the
//! run's next input) in one transaction. 2xx is success; anything else,
//! including connection errors, is a final skip. Retries, backoff and
//! signing come with the delivery issue (#7), which replaces this module.

use crate::EngineError;
use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use outflow_core::clock::to_micros;
use outflow_store::runs::{self, DeliveryRow};
use outflow_store::Store;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests in flight at once from one pass.
const CONCURRENCY: usize = 64;

pub struct Sender {
    client: reqwest::Client,
    worker: String,
    claims: AtomicU64,
    batch: usize,
    lease: Duration,
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub succeeded: usize,
    pub skipped: usize,
}

struct Outcome {
    delivery: DeliveryRow,
    code: Option<i64>,
    error: Option<String>,
}

impl Sender {
    pub fn new(
        worker: String,
        batch: usize,
        lease: Duration,
        timeout: std::time::Duration,
    ) -> Result<Self, EngineError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| EngineError::Http(e.to_string()))?;
        Ok(Self {
            client,
            worker,
            claims: AtomicU64::new(0),
            batch,
            lease,
        })
    }

    pub async fn pass(&self, store: &Store, now: DateTime<Utc>) -> Result<Sent, EngineError> {
        let owner = format!(
            "{}:send:{}",
            self.worker,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let (now_us, until, limit) = (to_micros(now), to_micros(now + self.lease), self.batch);
        let o = owner.clone();
        let claimed = store
            .write(move |ctx| runs::claim_deliveries(ctx.conn, &o, now_us, until, limit))
            .await?;
        if claimed.is_empty() {
            return Ok(Sent::default());
        }
        let mut outcomes = Vec::with_capacity(claimed.len());
        let mut rest = claimed.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<DeliveryRow> = rest.by_ref().take(CONCURRENCY).collect();
            outcomes.extend(join_all(chunk.into_iter().map(|d| self.send(d))).await);
        }
        let mut sent = Sent::default();
        for o in &outcomes {
            if o.code.is_some_and(|c| (200..300).contains(&c)) {
                sent.succeeded += 1;
            } else {
                sent.skipped += 1;
            }
        }
        store
            .write(move |ctx| {
                for o in &outcomes {
                    let ok = o.code.is_some_and(|c| (200..300).contains(&c));
                    let status = if ok { "succeeded" } else { "skipped" };
                    runs::complete_delivery(
                        ctx.conn,
                        &o.delivery,
                        &owner,
                        status,
                        o.code,
                        o.error.as_deref(),
                        now_us,
                    )?;
                }
                Ok(())
            })
            .await?;
        Ok(sent)
    }

    async fn send(&self, d: DeliveryRow) -> Outcome {
        let method = match reqwest::Method::from_bytes(d.method.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                return Outcome {
                    delivery: d,
                    code: None,
                    error: Some(format!("invalid method: {e}")),
                }
            }
        };
        let mut req = self.client.request(method, &d.url);
        let mut has_type = false;
        for (name, value) in &d.headers {
            has_type |= name.eq_ignore_ascii_case("content-type");
            req = req.header(name, value);
        }
        if !has_type {
            req = req.header("content-type", "application/json");
        }
        let result = req.body(d.body.clone()).send().await;
        match result {
            Ok(resp) => Outcome {
                code: Some(i64::from(resp.status().as_u16())),
                error: None,
                delivery: d,
            },
            Err(e) => Outcome {
                code: None,
                error: Some(e.to_string()),
                delivery: d,
            },
        }
    }
}
