//! Outflow's flow engine (issue #4): [`dispatch`] turns new events and list
//! joins into runs, [`executor`] advances due runs with the pure state
//! machine in `outflow_core::flow`, [`sender`] sends webhooks, [`facts`]
//! loads what conditions read. All state lives in the store (runs are rows
//! with a due time and a lease), so any number of workers — in one process
//! or several on one PostgreSQL — share the work, and a crashed one loses
//! nothing. All time comes from the injected [`Clock`]: tests move it and
//! call [`Engine::tick`] instead of sleeping.

pub mod audiences;
pub mod dispatch;
pub mod executor;
pub mod facts;
pub mod sender;

use chrono::Duration;
use outflow_core::Clock;
use outflow_store::{Store, StoreError};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::Notify;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("http client: {0}")]
    Http(String),
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Names this process's leases (unique per process).
    pub worker_id: String,
    /// Feed items, runs or deliveries per batch (one transaction each).
    pub batch: usize,
    /// How long a claim is held before another worker may take it over.
    pub lease: Duration,
    /// How long the background loop waits when there was nothing to do.
    pub poll: std::time::Duration,
    pub http_timeout: std::time::Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("w-{}", outflow_store::new_short_id()),
            batch: 1000,
            lease: Duration::seconds(60),
            poll: std::time::Duration::from_millis(100),
            http_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// What one [`Engine::tick`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub audiences: audiences::Worked,
    pub dispatched: dispatch::Dispatched,
    pub executed: executor::Executed,
    pub sent: sender::Sent,
}

impl Tick {
    pub fn is_idle(&self) -> bool {
        self.audiences.is_idle()
            && self.dispatched.items == 0
            && self.executed.claimed == 0
            && self.sent.succeeded + self.sent.skipped == 0
    }

    fn add(&mut self, t: Tick) {
        self.audiences.add(t.audiences);
        self.dispatched.items += t.dispatched.items;
        self.dispatched.runs += t.dispatched.runs;
        self.executed.claimed += t.executed.claimed;
        self.executed.advanced += t.executed.advanced;
        self.executed.lost += t.executed.lost;
        self.sent.succeeded += t.sent.succeeded;
        self.sent.skipped += t.sent.skipped;
    }
}

pub struct Engine {
    store: Store,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    pub dispatcher: dispatch::Dispatcher,
    pub audiences: audiences::Audiences,
    pub executor: executor::Executor,
    pub sender: sender::Sender,
    wake: Notify,
}

/// Upper bound on ticks in [`Engine::run_until_idle`], so a flow that
/// never settles cannot hang a test.
const MAX_TICKS: usize = 100_000;

impl Engine {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Self, EngineError> {
        Ok(Self {
            dispatcher: dispatch::Dispatcher::new(config.batch)
                .with_source(Arc::new(audiences::SegmentSource)),
            audiences: audiences::Audiences::new(config.batch),
            executor: executor::Executor::new(config.worker_id.clone(), config.batch, config.lease),
            sender: sender::Sender::new(
                config.worker_id.clone(),
                config.batch,
                config.lease,
                config.http_timeout,
            )?,
            store,
            clock,
            config,
            wake: Notify::new(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One batch of each kind of work: refresh the flow index if flows
    /// changed, dispatch new feed items, advance due runs, send webhooks.
    pub async fn tick(&self) -> Result<Tick, EngineError> {
        self.dispatcher.refresh(&self.store).await?;
        let dispatched = self.dispatcher.pass(&self.store, self.clock.now()).await?;
        // After dispatch, so audience work never delays an event's trigger;
        // segment joins it records are dispatched on the next tick.
        let audiences = self.audiences.pass(&self.store, self.clock.now()).await?;
        let executed = self.executor.pass(&self.store, self.clock.now()).await?;
        let sent = self.sender.pass(&self.store, self.clock.now()).await?;
        Ok(Tick {
            audiences,
            dispatched,
            executed,
            sent,
        })
    }

    /// Ticks until a tick finds nothing to do (at the current clock time).
    pub async fn run_until_idle(&self) -> Result<Tick, EngineError> {
        let mut total = Tick::default();
        for _ in 0..MAX_TICKS {
            let t = self.tick().await?;
            total.add(t);
            if t.is_idle() {
                break;
            }
        }
        Ok(total)
    }

    /// Wakes the background loop early (new events, joins, flow changes).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Starts the background loop: a pass, then — if it found nothing — a
    /// wait for [`Engine::notify`] or the poll interval.
    pub fn spawn(self: Arc<Self>) -> Worker {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let engine = self;
        let task = tokio::spawn(async move {
            loop {
                if *stopped.borrow() {
                    break;
                }
                let busy = match engine.tick().await {
                    Ok(t) => !t.is_idle(),
                    Err(e) => {
                        tracing::error!(error = %e, "engine pass failed");
                        false
                    }
                };
                if busy {
                    continue;
                }
                tokio::select! {
                    _ = engine.wake.notified() => {}
                    _ = tokio::time::sleep(engine.config.poll) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        Worker { task, stop }
    }
}

/// The running background loop.
pub struct Worker {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Worker {
    /// Lets the current pass finish (its batch commits), then stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
