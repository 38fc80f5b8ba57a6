//! The delivery worker. A pass leases due deliveries in a batch and starts
//! one task per delivery; each task waits for a slot of its host (a
//! concurrency limit per host), sends, and hands its result to the recorder,
//! which writes finished attempts in batches (one transaction each). A host
//! whose breaker is open, or whose queue is full, gets its deliveries
//! deferred without an attempt, and the rest of that destination's backlog
//! postponed with them in one statement, so a dead or slow endpoint holds
//! only its own slots and its backlog is not claimed ahead of the others.

use crate::breaker::{Admit, Breaker, BreakerConfig};
use crate::client::{self, Answer, Request};
use crate::guard::AllowList;
use crate::metrics::Metrics;
use crate::policy::{classify, parse_retry_after, RetryPolicy, Verdict};
use crate::signing::{signature_header, Secret};
use crate::DeliveryError;
use chrono::{DateTime, Duration, Utc};
use outflow_core::clock::to_micros;
use outflow_core::Clock;
use outflow_store::deliveries::{self, status, AttemptLog, Claimed, Next, Recorded};
use outflow_store::Store;
use rand::Rng;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify, Semaphore};

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Names this process's leases.
    pub worker_id: String,
    /// First attempts claimed per pass; retries get a quarter of it.
    pub batch: usize,
    /// How long a claim is held; longer than a host queue takes to drain.
    pub lease: Duration,
    pub connect_timeout: std::time::Duration,
    pub timeout: std::time::Duration,
    /// Requests in flight at once per destination host.
    pub per_host: usize,
    /// Deliveries waiting in memory for one host beyond which new ones are
    /// deferred, until the host has answered: then the limit is what it
    /// drains in [`QUEUE_WAIT_US`] at its measured pace, between this and
    /// [`QUEUE_GROWTH`] times this (see [`queue_limit`]). A queued delivery
    /// whose lease would run out before it could finish, or whose host's
    /// breaker opened meanwhile, is deferred when its turn comes instead
    /// of being sent.
    pub per_host_queue: usize,
    /// Deliveries waiting in memory across all hosts beyond which new ones
    /// are deferred (by `defer`): with many fast hosts, each may queue up to
    /// 16 × `per_host_queue`, and memory must stay bounded.
    pub queue_total: usize,
    pub policy: RetryPolicy,
    pub breaker: BreakerConfig,
    /// `webhooks.allow_private`: hosts, addresses, CIDR blocks.
    pub allow_private: Vec<String>,
    /// How long a replaced signing secret keeps signing.
    pub rotation_window: Duration,
    /// Bytes of each response body kept in the log.
    pub response_limit: usize,
    /// How long a deferred delivery waits when its host is saturated (at
    /// most: a host whose pace is known is retried when its queue will
    /// have drained, see [`full_queue_delay`]).
    pub defer: Duration,
}

/// How long a delivery may wait in a host's queue at the host's pace: a
/// fast host takes a burst in memory instead of having it deferred to the
/// database and claimed again a second later.
const QUEUE_WAIT_US: u64 = 5_000_000;
/// How far past `per_host_queue` a fast host's queue may grow (memory).
const QUEUE_GROWTH: usize = 16;
/// The shortest deferral of a full queue, so a burst is not re-claimed in
/// a tight loop.
const MIN_FULL_QUEUE_DELAY_US: u64 = 50_000;

/// The queue limit of a host whose requests hold a slot `hold_us` on
/// average (0: not known yet).
fn queue_limit(per_host: usize, per_host_queue: usize, hold_us: u64) -> usize {
    let floor = per_host_queue.max(1);
    if hold_us == 0 {
        return floor;
    }
    let drained = (QUEUE_WAIT_US / hold_us).saturating_mul(per_host as u64);
    usize::try_from(drained)
        .unwrap_or(usize::MAX)
        .clamp(floor, floor.saturating_mul(QUEUE_GROWTH))
}

/// How long a delivery that found its host's queue full waits: until the
/// queue will have drained at the host's pace, within
/// [`MIN_FULL_QUEUE_DELAY_US`] and `defer`.
fn full_queue_delay(queued: usize, per_host: usize, hold_us: u64, defer: Duration) -> Duration {
    if hold_us == 0 {
        return defer;
    }
    let us = (queued as u64).saturating_mul(hold_us) / per_host.max(1) as u64;
    let most = defer.num_microseconds().unwrap_or(i64::MAX).max(0) as u64;
    let us = us.max(MIN_FULL_QUEUE_DELAY_US).min(most);
    Duration::microseconds(i64::try_from(us).unwrap_or(i64::MAX))
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("w-{}", outflow_store::new_short_id()),
            batch: 1000,
            lease: Duration::seconds(120),
            connect_timeout: std::time::Duration::from_secs(5),
            timeout: std::time::Duration::from_secs(15),
            per_host: 64,
            per_host_queue: 4096,
            queue_total: 131_072,
            policy: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            allow_private: Vec::new(),
            rotation_window: Duration::hours(24),
            response_limit: 64 * 1024,
            defer: Duration::seconds(1),
        }
    }
}

/// One destination host's share of the worker.
struct Host {
    slots: Semaphore,
    queued: AtomicUsize,
    /// How long a request holds a slot, in µs: a moving average over
    /// answered and failed requests (0 until the first), so the queue's
    /// limit follows how fast the host drains it.
    hold_us: AtomicU64,
    /// When the last of those requests ended ([`monotonic_us`]).
    answered_us: AtomicU64,
    breaker: Mutex<Breaker>,
    /// The breaker state last exported as a metric (-1: none yet), so the
    /// gauge is written when the state changes, not on every attempt.
    exported: std::sync::atomic::AtomicI64,
}

impl Host {
    /// Folds one request's slot time into the average (1/8 weight; racing
    /// updates may lose one sample, which an average can afford).
    fn held(&self, took: std::time::Duration, now_us: u64) {
        self.answered_us.store(now_us, Ordering::Relaxed);
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.hold_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.hold_us.store(new.max(1), Ordering::Relaxed);
    }

    /// The slot time the queue limit goes by: unknown (0) again when the
    /// host has answered nothing for ten slot times (at least a second),
    /// so a fast host that stops answering does not keep its long queue.
    fn pace(&self, now_us: u64) -> u64 {
        let hold = self.hold_us.load(Ordering::Relaxed);
        let silent = now_us.saturating_sub(self.answered_us.load(Ordering::Relaxed));
        if silent > hold.saturating_mul(10).max(1_000_000) {
            0
        } else {
            hold
        }
    }
}

/// Microseconds since the first call: the time base of [`Host`]'s pace.
fn monotonic_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let since = EPOCH.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    pub claimed: usize,
    pub started: usize,
    pub deferred: usize,
}

pub struct Deliverer {
    store: Store,
    clock: Arc<dyn Clock>,
    config: DeliveryConfig,
    allow: AllowList,
    client: client::Client,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// Per account, with when they were read: another process sharing
    /// PostgreSQL may rotate, so the cache is re-read after
    /// [`SECRETS_TTL`].
    secrets: Mutex<HashMap<String, CachedSecrets>>,
    /// One secrets load per account at a time: when the cache is cold or
    /// stale, every delivery in flight for the account would otherwise
    /// read (or, for a new account, each write a secret) at once.
    secrets_loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Secrets loads so far (what the gate above saves is visible in tests).
    secret_loads: AtomicU64,
    /// Destinations (flow, action, URL prefix) whose backlog was postponed,
    /// and until when: one write per destination per deferral period.
    postponed: Mutex<HashMap<(String, String, String), i64>>,
    done_tx: mpsc::UnboundedSender<Recorded>,
    done_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Recorded>>,
    in_flight: AtomicUsize,
    settled: Notify,
    /// Results handed to the recorder, and results it has dealt with
    /// (written, or failed to write): [`Deliverer::settle`] waits for the
    /// second to reach the first.
    finished: AtomicU64,
    handled: AtomicU64,
    handled_notify: Notify,
    claims: AtomicU64,
    wake: Notify,
    /// Notified when recorded outcomes made waiting runs due, so the
    /// engine advances them without waiting for its poll.
    pub runs_due: Notify,
    pub metrics: Arc<Metrics>,
}

/// An account's signing secrets and when they were read.
type CachedSecrets = (Arc<Vec<Secret>>, std::time::Instant);

/// How long signing secrets are cached (a rotation in this process clears
/// the cache at once).
const SECRETS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Header names whose values never reach the log.
fn is_secret_header(name: &str) -> bool {
    const NAMES: [&str; 5] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
        "api-key",
    ];
    const PARTS: [&str; 6] = [
        "token", "secret", "password", "apikey", "api_key", "session",
    ];
    let n = name.as_bytes();
    NAMES.iter().any(|w| name.eq_ignore_ascii_case(w))
        || PARTS.iter().any(|w| {
            n.windows(w.len())
                .any(|s| s.eq_ignore_ascii_case(w.as_bytes()))
        })
}

/// Headers as the log shows them (borrowed: the attempt log serializes
/// them at once).
pub fn redact(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_header(k) {
                "[redacted]"
            } else {
                v.as_str()
            };
            (k.as_str(), v)
        })
        .collect()
}

/// `host:port` of a parsed URL: deliveries are limited and broken per key.
fn key_of(u: &url::Url) -> String {
    format!(
        "{}:{}",
        u.host_str().unwrap_or_default(),
        u.port_or_known_default().unwrap_or(0)
    )
}

impl Deliverer {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: DeliveryConfig,
    ) -> Result<Self, DeliveryError> {
        let allow = AllowList::new(&config.allow_private);
        let client = client::build(&allow, config.connect_timeout, config.timeout)
            .map_err(|e| DeliveryError::Http(e.to_string()))?;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Ok(Self {
            store,
            clock,
            config,
            allow,
            client,
            hosts: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
            secrets_loading: Mutex::new(HashMap::new()),
            secret_loads: AtomicU64::new(0),
            postponed: Mutex::new(HashMap::new()),
            done_tx,
            done_rx: tokio::sync::Mutex::new(done_rx),
            in_flight: AtomicUsize::new(0),
            settled: Notify::new(),
            finished: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            handled_notify: Notify::new(),
            claims: AtomicU64::new(0),
            wake: Notify::new(),
            runs_due: Notify::new(),
            metrics: Arc::new(Metrics::new()),
        })
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// Wakes the claim loop (new deliveries were written).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Forgets cached signing secrets (after a rotation).
    pub fn forget_secrets(&self) {
        if let Ok(mut s) = self.secrets.lock() {
            s.clear();
        }
    }

    fn host(&self, key: &str) -> Arc<Host> {
        let mut hosts = match self.hosts.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        if let Some(h) = hosts.get(key) {
            return h.clone();
        }
        hosts
            .entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Host {
                    slots: Semaphore::new(self.config.per_host.max(1)),
                    queued: AtomicUsize::new(0),
                    hold_us: AtomicU64::new(0),
                    answered_us: AtomicU64::new(0),
                    breaker: Mutex::new(Breaker::default()),
                    exported: std::sync::atomic::AtomicI64::new(-1),
                })
            })
            .clone()
    }

    fn cached_secrets(&self, account: &str) -> Option<Arc<Vec<Secret>>> {
        let (s, at) = self.secrets.lock().ok()?.get(account).cloned()?;
        (at.elapsed() < SECRETS_TTL).then_some(s)
    }

    /// The secrets that sign for `account`, newest first; makes one if the
    /// account has none yet.
    async fn secrets_for(&self, account: &str) -> Result<Arc<Vec<Secret>>, DeliveryError> {
        if let Some(s) = self.cached_secrets(account) {
            return Ok(s);
        }
        let gate = self
            .secrets_loading
            .lock()
            .ok()
            .map(|mut m| m.entry(account.to_owned()).or_default().clone());
        let _loading = match &gate {
            Some(g) => Some(g.lock().await),
            None => None,
        };
        // Loaded by whoever held the gate before us.
        if let Some(s) = self.cached_secrets(account) {
            return Ok(s);
        }
        self.secret_loads.fetch_add(1, Ordering::Relaxed);
        let texts = current_secrets(&self.store, account, to_micros(self.clock.now())).await?;
        let parsed: Vec<Secret> = texts.iter().filter_map(|t| Secret::parse(t).ok()).collect();
        let parsed = Arc::new(parsed);
        if let Ok(mut m) = self.secrets.lock() {
            m.insert(
                account.to_owned(),
                (parsed.clone(), std::time::Instant::now()),
            );
        }
        Ok(parsed)
    }

    /// Leases a batch of due deliveries and starts them. Results arrive at
    /// the recorder ([`Deliverer::flush`]).
    pub async fn pass(self: &Arc<Self>) -> Result<Passed, DeliveryError> {
        let now = self.clock.now();
        let owner = format!(
            "{}:deliver:{}",
            self.config.worker_id,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let (now_us, until) = (to_micros(now), to_micros(now + self.config.lease));
        let (first, retries) = (self.config.batch, (self.config.batch / 4).max(1));
        let o = owner.clone();
        let claimed = self
            .store
            .write(move |ctx| deliveries::claim(ctx.conn, &o, now_us, until, first, retries))
            .await?;
        Ok(self.start(&owner, claimed))
    }

    /// The lease owner under which steps hand new deliveries straight to
    /// this worker ([`Deliverer::start`]), skipping the claim.
    pub fn handoff_owner(&self) -> String {
        format!("{}:deliver:handoff", self.config.worker_id)
    }

    /// Starts deliveries this process already holds the lease of (claimed
    /// by [`Deliverer::pass`], or inserted leased by a run's step).
    pub fn start(self: &Arc<Self>, owner: &str, claimed: Vec<Claimed>) -> Passed {
        let now = self.clock.now();
        let owner = owner.to_owned();
        let mut passed = Passed {
            claimed: claimed.len(),
            ..Passed::default()
        };
        // A batch mostly goes to one URL: parse it and find its host once.
        let mut last: Option<(String, Option<url::Url>, String, Arc<Host>)> = None;
        for d in claimed {
            if let Some(why) = d.disabled.clone() {
                self.metrics.attempt("skipped");
                self.finish(Recorded {
                    owner: owner.clone(),
                    delivery: d,
                    attempt: None,
                    next: Next::Final {
                        status: status::SKIPPED,
                        reason: format!("destination disabled: {why}"),
                    },
                    profile_properties: None,
                });
                continue;
            }
            let (parsed, key, host) = match &last {
                Some((u, p, k, h)) if *u == d.url => (p.clone(), k.clone(), h.clone()),
                _ => {
                    let p = url::Url::parse(&d.url).ok();
                    let k = p.as_ref().map(key_of).unwrap_or_default();
                    let h = self.host(&k);
                    last = Some((d.url.clone(), p.clone(), k.clone(), h.clone()));
                    (p, k, h)
                }
            };
            let admit = match host.breaker.lock() {
                Ok(mut b) => b.admit(&self.config.breaker, now),
                Err(_) => Admit::Yes,
            };
            let defer_until = match admit {
                Admit::No(at) => Some(at),
                Admit::Yes if self.in_flight.load(Ordering::Relaxed) >= self.config.queue_total => {
                    Some(now + self.config.defer)
                }
                Admit::Yes => {
                    let (queued, hold) = (
                        host.queued.load(Ordering::Relaxed),
                        host.pace(monotonic_us()),
                    );
                    let (per_host, limit) = (self.config.per_host, self.config.per_host_queue);
                    (queued >= queue_limit(per_host, limit, hold))
                        .then(|| now + full_queue_delay(queued, per_host, hold, self.config.defer))
                }
            };
            if let Some(at) = defer_until {
                passed.deferred += 1;
                self.metrics.attempt("deferred");
                self.postpone_destination(&d, to_micros(at));
                self.finish(Recorded {
                    owner: owner.clone(),
                    delivery: d,
                    attempt: None,
                    next: Next::Defer { due: to_micros(at) },
                    profile_properties: None,
                });
                continue;
            }
            passed.started += 1;
            host.queued.fetch_add(1, Ordering::Relaxed);
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let me = self.clone();
            let owner = owner.clone();
            let claimed_at = std::time::Instant::now();
            tokio::spawn(async move {
                let rec = me
                    .attempt(&host, &key, parsed.as_ref(), owner, d, claimed_at)
                    .await;
                host.queued.fetch_sub(1, Ordering::Relaxed);
                me.finish(rec);
                if me.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                    me.settled.notify_waiters();
                }
            });
        }
        passed
    }

    /// `d` was deferred to `until` for its host's sake (breaker open, queue
    /// full, or too slow to reach before its lease ends): the rest of its
    /// destination's backlog would be claimed only to be deferred the same
    /// way, one write each and ahead of other hosts' deliveries, so it is
    /// postponed in one statement instead, once per destination and period.
    fn postpone_destination(&self, d: &Claimed, until: i64) {
        let Some(prefix) = destination_prefix(&d.url) else {
            return;
        };
        let key = (d.flow_id.clone(), d.action_id.clone(), prefix.to_owned());
        {
            let Ok(mut postponed) = self.postponed.lock() else {
                return;
            };
            if postponed.get(&key).is_some_and(|&u| u >= until) {
                return;
            }
            if postponed.len() >= 1024 {
                let now = to_micros(self.clock.now());
                postponed.retain(|_, u| *u > now);
            }
            postponed.insert(key.clone(), until);
        }
        let store = self.store.clone();
        let now = to_micros(self.clock.now());
        tokio::spawn(async move {
            let (flow, action, prefix) = key;
            let (f, a) = (flow.clone(), action.clone());
            match store
                .write(move |ctx| {
                    deliveries::postpone_destination(ctx.conn, &f, &a, &prefix, until, now)
                })
                .await
            {
                Ok(0) => {}
                // The URL prefix is not logged: it may carry credentials.
                Ok(n) => {
                    tracing::info!(
                        flow,
                        action,
                        until,
                        postponed = n,
                        "destination backlog postponed"
                    )
                }
                Err(e) => tracing::warn!(error = %e, "postponing a destination's backlog failed"),
            }
        });
    }

    fn finish(&self, r: Recorded) {
        self.finished.fetch_add(1, Ordering::SeqCst);
        // The receiver lives as long as `self`.
        let _ = self.done_tx.send(r);
    }

    async fn attempt(
        &self,
        host: &Host,
        key: &str,
        url: Option<&url::Url>,
        owner: String,
        d: Claimed,
        claimed_at: std::time::Instant,
    ) -> Recorded {
        let _slot = host.slots.acquire().await;
        let now = self.clock.now();
        let open_until = match host.breaker.lock().map(|b| b.state()) {
            Ok(crate::breaker::State::Open { until }) if until > now => Some(until),
            _ => None,
        };
        // Sending now could outlive the claim: another worker might take
        // the delivery over and send it a second time.
        let budget = self.config.lease.to_std().unwrap_or_default() * 9 / 10;
        let late = claimed_at.elapsed() + self.config.timeout > budget;
        if open_until.is_some() || late {
            self.metrics.attempt("deferred");
            let due = open_until.unwrap_or(now + self.config.defer);
            self.postpone_destination(&d, to_micros(due));
            return Recorded {
                owner,
                delivery: d,
                attempt: None,
                next: Next::Defer {
                    due: to_micros(due),
                },
                profile_properties: None,
            };
        }
        let secrets = match self.secrets_for(&d.account_id).await {
            Ok(s) => s,
            Err(e) => {
                // Without a secret nothing is sent; try again shortly.
                tracing::error!(error = %e, "signing secrets unavailable");
                return Recorded {
                    owner,
                    delivery: d,
                    attempt: None,
                    next: Next::Defer {
                        due: to_micros(self.clock.now() + self.config.defer),
                    },
                    profile_properties: None,
                };
            }
        };
        let sent_at = self.clock.now();
        let ts = sent_at.timestamp();
        let mut headers: Vec<(String, String)> = d.headers.clone();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        headers.push(("webhook-id".into(), d.id.clone()));
        headers.push(("webhook-timestamp".into(), ts.to_string()));
        headers.push((
            "webhook-signature".into(),
            signature_header(&secrets, &d.id, ts, d.body.as_bytes()),
        ));
        let held = std::time::Instant::now();
        let answer = client::send(
            &self.client,
            &self.allow,
            Request {
                method: &d.method,
                url: &d.url,
                parsed: url,
                headers: &headers,
                body: &d.body,
            },
            self.config.response_limit,
        )
        .await;
        if matches!(answer, Answer::Response { .. } | Answer::Failed { .. }) {
            host.held(held.elapsed(), monotonic_us());
        }
        let request_headers =
            serde_json::to_string(&redact(&headers)).unwrap_or_else(|_| "[]".into());
        let now = self.clock.now();
        let rec = self.judge(owner, d, answer, request_headers, sent_at, now);
        let ok = !matches!(
            rec.attempt.as_ref().map(|a| a.outcome),
            Some("retry" | "failed")
        );
        if let Ok(mut b) = host.breaker.lock() {
            b.record(&self.config.breaker, ok, now);
            let state = b.state().gauge();
            if host.exported.swap(state, Ordering::Relaxed) != state {
                self.metrics.breaker(key, state);
            }
        }
        rec
    }

    /// Turns an answer into the log entry and what happens next.
    fn judge(
        &self,
        owner: String,
        d: Claimed,
        answer: Answer,
        request_headers: String,
        sent_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Recorded {
        let mut log = AttemptLog {
            at: to_micros(sent_at),
            request_headers,
            ..AttemptLog::default()
        };
        let attempts_in_series = (d.attempts - d.retry_base + 1).max(1) as u32;
        let retry_or_fail = |retry_after: Option<Duration>, reason: String| {
            let unit = rand::rng().random_range(-1.0..=1.0);
            match self
                .config
                .policy
                .next_delay(attempts_in_series, retry_after, unit)
            {
                Some(wait) => (
                    "retry",
                    Next::Retry {
                        due: to_micros(now + wait),
                    },
                ),
                None => (
                    "failed",
                    Next::Final {
                        status: status::FAILED,
                        reason: format!("{reason}; gave up after {attempts_in_series} attempts"),
                    },
                ),
            }
        };
        let mut props = None;
        let (outcome, next) = match answer {
            Answer::Refused(r) => {
                log.error = Some(r.to_string());
                (
                    "refused",
                    Next::Final {
                        status: status::SKIPPED,
                        reason: r.to_string(),
                    },
                )
            }
            Answer::Invalid(e) => {
                log.error = Some(e.clone());
                (
                    "skipped",
                    Next::Final {
                        status: status::SKIPPED,
                        reason: e,
                    },
                )
            }
            Answer::Failed { error, latency } => {
                log.latency_us = Some(latency.as_micros() as i64);
                log.error = Some(error.clone());
                retry_or_fail(None, error)
            }
            Answer::Response {
                status: code,
                headers,
                body,
                latency,
            } => {
                self.metrics.latency(latency.as_secs_f64());
                log.status_code = Some(i64::from(code));
                log.latency_us = Some(latency.as_micros() as i64);
                let retry_after = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| parse_retry_after(v, now));
                log.response_headers = serde_json::to_string(&headers).ok();
                let verdict = classify(Some(code));
                if verdict == Verdict::Succeeded && !d.response_map.is_empty() {
                    props = response_properties(&d.response_map, &body);
                }
                log.response_body = Some(String::from_utf8_lossy(&body).into_owned());
                match verdict {
                    Verdict::Succeeded => ("succeeded", Next::Succeeded),
                    Verdict::Retry => retry_or_fail(retry_after, format!("HTTP {code}")),
                    Verdict::Gone => (
                        "gone",
                        Next::Gone {
                            reason: "HTTP 410 Gone: the destination was disabled".into(),
                        },
                    ),
                    Verdict::Skip => (
                        "skipped",
                        Next::Final {
                            status: status::SKIPPED,
                            reason: format!("HTTP {code}"),
                        },
                    ),
                }
            }
        };
        log.outcome = outcome;
        self.metrics.attempt(outcome);
        Recorded {
            owner,
            delivery: d,
            attempt: Some(log),
            next,
            profile_properties: props,
        }
    }

    /// Writes every result that has arrived, in one transaction. Returns
    /// how many.
    pub async fn flush(&self) -> Result<usize, DeliveryError> {
        // The background recorder holds the receiver while it waits; then
        // the results are its to write.
        let Ok(mut rx) = self.done_rx.try_lock() else {
            return Ok(0);
        };
        let mut batch = Vec::new();
        take_ready(&mut rx, &mut batch);
        drop(rx);
        self.write(batch).await
    }

    async fn write(&self, batch: Vec<Recorded>) -> Result<usize, DeliveryError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        let now = to_micros(self.clock.now());
        // The batch comes back to be freed here, off the writer thread.
        let written = self
            .store
            .write(move |ctx| deliveries::record(ctx, &batch, now).map(|w| (w, batch)))
            .await
            .map(|(w, _batch)| w);
        self.handled.fetch_add(n as u64, Ordering::SeqCst);
        self.handled_notify.notify_waiters();
        // Runs the recorder ended itself need no engine pass; the others
        // (including any it could not end) wait for one.
        if written?.to_engine > 0 {
            self.runs_due.notify_one();
        }
        Ok(n)
    }

    /// Waits until every started delivery has finished, then writes the
    /// results. For tests and `Engine::run_until_idle`.
    pub async fn settle(&self) -> Result<usize, DeliveryError> {
        loop {
            let notified = self.settled.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            notified.await;
        }
        let mut total = 0;
        loop {
            total += self.flush().await?;
            let handled = self.handled_notify.notified();
            if self.handled.load(Ordering::SeqCst) >= self.finished.load(Ordering::SeqCst) {
                return Ok(total);
            }
            // The background recorder is writing them; wait, then look
            // again (it may have let go of the receiver).
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), handled).await;
        }
    }

    /// Deliveries started and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The background loops: one claims (woken by [`Deliverer::notify`] or
    /// the poll interval), one records results as they arrive.
    pub fn spawn(self: Arc<Self>, poll: std::time::Duration) -> DeliveryTasks {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let me = self.clone();
        let mut s1 = stopped.clone();
        let claimer = tokio::spawn(async move {
            loop {
                if *s1.borrow() {
                    break;
                }
                let busy = match me.pass().await {
                    Ok(p) => p.claimed > 0,
                    Err(e) => {
                        tracing::error!(error = %e, "delivery pass failed");
                        false
                    }
                };
                if busy {
                    continue;
                }
                tokio::select! {
                    _ = me.wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = s1.changed() => break,
                }
            }
        });
        let me = self;
        let mut s2 = stopped;
        let recorder = tokio::spawn(async move {
            loop {
                let first = {
                    let mut rx = me.done_rx.lock().await;
                    tokio::select! {
                        r = rx.recv() => r,
                        _ = s2.changed() => None,
                    }
                };
                let Some(first) = first else { break };
                let mut batch = vec![first];
                take_ready(&mut *me.done_rx.lock().await, &mut batch);
                if let Err(e) = me.write(batch).await {
                    // The leases expire and the deliveries are sent again
                    // (same webhook-id): at-least-once.
                    tracing::error!(error = %e, "recording deliveries failed");
                }
            }
            // Whatever finished before the stop is still written.
            let _ = me.settle().await;
        });
        DeliveryTasks {
            claimer,
            recorder,
            stop,
        }
    }
}

/// The running delivery loops.
pub struct DeliveryTasks {
    claimer: tokio::task::JoinHandle<()>,
    recorder: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl DeliveryTasks {
    /// Stops claiming, lets started deliveries finish and records them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.claimer.await;
        let _ = self.recorder.await;
    }
}

/// Results recorded in one transaction at most.
const RECORD_BATCH: usize = 4096;

/// Moves results that have already arrived into `batch`, without waiting.
fn take_ready(rx: &mut mpsc::UnboundedReceiver<Recorded>, batch: &mut Vec<Recorded>) {
    while batch.len() < RECORD_BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

/// The account's signing secrets, creating the first one if needed.
pub async fn current_secrets(
    store: &Store,
    account: &str,
    now: i64,
) -> Result<Vec<String>, DeliveryError> {
    let a = account.to_owned();
    let existing = {
        let a = a.clone();
        store
            .read(move |c| deliveries::signing_secrets(c, &a, now))
            .await?
    };
    if !existing.is_empty() {
        return Ok(existing);
    }
    let fresh = Secret::generate().as_str().to_owned();
    store
        .write(move |ctx| {
            deliveries::ensure_secret(ctx.conn, &a, &fresh, now)?;
            deliveries::signing_secrets(ctx.conn, &a, now)
        })
        .await
        .map_err(Into::into)
}

/// A delivery URL's scheme and authority with the `/` that starts its
/// path ("https://hooks.example:8443/"), or `None` when nothing follows the
/// authority but a query or fragment: a prefix without the `/` would also
/// match longer host names.
fn destination_prefix(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = start + url[start..].find(['/', '?', '#'])?;
    url[end..].starts_with('/').then(|| &url[..=end])
}

/// Profile properties from a JSON response, by `response_to_profile`
/// (property → JSON pointer). Missing pointers are left out.
pub fn response_properties(map: &[(String, String)], body: &[u8]) -> Option<Map<String, Value>> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let mut out = Map::new();
    for (prop, pointer) in map {
        if let Some(v) = json.pointer(pointer) {
            out.insert(prop.clone(), v.clone());
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_queue_grows_with_the_hosts_pace() {
        // Unknown pace: the configured limit.
        assert_eq!(queue_limit(64, 4096, 0), 4096);
        // 2 ms per request on 64 slots drains 32,000/s: 5 s of that is more
        // than the growth allows.
        assert_eq!(queue_limit(64, 4096, 2_000), 4096 * QUEUE_GROWTH);
        // 50 ms: 1,280/s, 6,400 in 5 s.
        assert_eq!(queue_limit(64, 4096, 50_000), 6_400);
        // A host that times out (15 s) keeps the configured limit.
        assert_eq!(queue_limit(64, 4096, 15_000_000), 4096);
    }

    #[test]
    fn a_full_queue_waits_until_it_will_have_drained() {
        let defer = Duration::seconds(1);
        assert_eq!(full_queue_delay(4096, 64, 0, defer), defer);
        // 4,096 at 2 ms on 64 slots: 128 ms.
        assert_eq!(
            full_queue_delay(4096, 64, 2_000, defer),
            Duration::milliseconds(128)
        );
        assert_eq!(
            full_queue_delay(10, 64, 2_000, defer),
            Duration::microseconds(MIN_FULL_QUEUE_DELAY_US as i64)
        );
        assert_eq!(full_queue_delay(4096, 64, 15_000_000, defer), defer);
    }

    #[test]
    fn a_hosts_pace_is_an_average_forgotten_when_it_falls_silent() {
        let host = Host {
            slots: Semaphore::new(1),
            queued: AtomicUsize::new(0),
            hold_us: AtomicU64::new(0),
            answered_us: AtomicU64::new(0),
            breaker: Mutex::new(Breaker::default()),
            exported: std::sync::atomic::AtomicI64::new(-1),
        };
        assert_eq!(host.pace(0), 0);
        host.held(std::time::Duration::from_micros(8_000), 5_000_000);
        assert_eq!(host.pace(5_000_000), 8_000);
        host.held(std::time::Duration::from_micros(16_000), 5_100_000);
        assert_eq!(host.pace(5_100_000), 9_000);
        // Silent for a second (more than ten slot times): pace unknown.
        assert_eq!(host.pace(6_100_000), 9_000);
        assert_eq!(host.pace(6_100_001), 0);
    }

    /// Fifty deliveries of a new account start at once: one of them loads
    /// (and creates) the signing secret, the others wait and share it.
    /// Without the gate each loaded, and on PostgreSQL that herd of writes
    /// doubled the healthy deliveries' time in the isolation test.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cold_secrets_cache_is_loaded_once() {
        let db = outflow_testkit::TestDb::by_name("sqlite");
        let store = Store::open(&db.url()).await.expect("store");
        let account = store
            .write(|ctx| outflow_store::accounts::bootstrap(ctx.conn, None, 1))
            .await
            .expect("bootstrap")
            .expect("account")
            .account_id;
        let d = Arc::new(
            Deliverer::new(
                store,
                Arc::new(outflow_core::SystemClock),
                DeliveryConfig::default(),
            )
            .expect("deliverer"),
        );
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (d, a) = (d.clone(), account.clone());
                tokio::spawn(async move { d.secrets_for(&a).await.map(|s| s.len()) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task").expect("secrets"), 1);
        }
        assert_eq!(d.secret_loads.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn destination_prefixes() {
        assert_eq!(
            destination_prefix("https://a.example:8443/hook?x=1"),
            Some("https://a.example:8443/")
        );
        assert_eq!(
            destination_prefix("http://127.0.0.1/"),
            Some("http://127.0.0.1/")
        );
        assert_eq!(destination_prefix("https://a.example?x=/y"), None);
        assert_eq!(destination_prefix("https://a.example"), None);
        assert_eq!(destination_prefix("not a url"), None);
    }

    #[test]
    fn redaction() {
        let h = vec![
            ("Authorization".to_owned(), "Bearer abc".to_owned()),
            ("X-Shop-Token".to_owned(), "t".to_owned()),
            ("X-Trace".to_owned(), "1".to_owned()),
            ("webhook-signature".to_owned(), "v1,x".to_owned()),
        ];
        let r = redact(&h);
        assert_eq!(r[0].1, "[redacted]");
        assert_eq!(r[1].1, "[redacted]");
        assert_eq!(r[2].1, "1");
        assert_eq!(r[3].1, "v1,x");
    }

    #[test]
    fn response_mapping() {
        let map = vec![
            ("crm_id".to_owned(), "/data/id".to_owned()),
            ("tier".to_owned(), "/tier".to_owned()),
            ("missing".to_owned(), "/nope".to_owned()),
        ];
        let p = response_properties(&map, br#"{"data":{"id":42},"tier":"gold"}"#).unwrap();
        assert_eq!(p["crm_id"], 42);
        assert_eq!(p["tier"], "gold");
        assert!(!p.contains_key("missing"));
        assert_eq!(response_properties(&map, b"not json"), None);
    }

    #[test]
    fn host_keys() {
        let key = |u: &str| url::Url::parse(u).map(|u| key_of(&u)).unwrap_or_default();
        assert_eq!(key("https://a.example/x"), "a.example:443");
        assert_eq!(key("http://127.0.0.1:8080/"), "127.0.0.1:8080");
    }
}
