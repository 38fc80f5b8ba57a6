//! Outflow's flow engine (issue #4): [`dispatch`] turns new events and list
//! joins into runs, [`executor`] advances due runs with the pure state
//! machine in `outflow_core::flow`, webhooks go to `outflow_delivery`'s
//! [`Deliverer`], [`facts`] loads what conditions read. All state lives in the store (runs are rows
//! with a due time and a lease), so any number of workers — in one process
//! or several on one PostgreSQL — share the work, and a crashed one loses
//! nothing. All time comes from the injected [`Clock`]: tests move it and
//! call [`Engine::tick`] instead of sleeping.

pub mod audiences;
pub mod dispatch;
pub mod executor;
pub mod facts;

pub use outflow_delivery::{Deliverer, DeliveryConfig};

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
    #[error(transparent)]
    Delivery(#[from] outflow_delivery::DeliveryError),
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
    pub delivery: DeliveryConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let worker_id = format!("w-{}", outflow_store::new_short_id());
        Self {
            delivery: DeliveryConfig {
                worker_id: worker_id.clone(),
                ..DeliveryConfig::default()
            },
            worker_id,
            batch: 1000,
            lease: Duration::seconds(60),
            poll: std::time::Duration::from_millis(100),
        }
    }
}

/// What one [`Engine::tick`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub audiences: audiences::Worked,
    pub dispatched: dispatch::Dispatched,
    pub executed: executor::Executed,
    /// Deliveries leased and finished (in [`Engine::tick`], every started
    /// delivery is awaited).
    pub delivered: usize,
}

impl Tick {
    pub fn is_idle(&self) -> bool {
        self.audiences.is_idle()
            && self.dispatched.items == 0
            && self.executed.claimed == 0
            && self.delivered == 0
    }

    fn add(&mut self, t: Tick) {
        self.audiences.add(t.audiences);
        self.dispatched.items += t.dispatched.items;
        self.dispatched.runs += t.dispatched.runs;
        self.executed.claimed += t.executed.claimed;
        self.executed.advanced += t.executed.advanced;
        self.executed.lost += t.executed.lost;
        self.delivered += t.delivered;
    }
}

pub struct Engine {
    store: Store,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    pub dispatcher: dispatch::Dispatcher,
    pub audiences: audiences::Audiences,
    pub executor: executor::Executor,
    pub deliverer: Arc<Deliverer>,
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
        let deliverer = Arc::new(Deliverer::new(
            store.clone(),
            clock.clone(),
            config.delivery.clone(),
        )?);
        Ok(Self {
            dispatcher: dispatch::Dispatcher::new(config.batch)
                .with_source(Arc::new(audiences::SegmentSource))
                .with_handoff(format!("{}:handoff", config.worker_id), config.lease),
            audiences: audiences::Audiences::new(config.batch),
            executor: executor::Executor::new(config.worker_id.clone(), config.batch, config.lease)
                .with_handoff(executor::Handoff {
                    owner: deliverer.handoff_owner(),
                    lease: config.delivery.lease,
                }),
            deliverer,
            store,
            clock,
            config,
            wake: Notify::new(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Dispatch and execution: one batch of each. Deliveries the batch
    /// wrote go to the deliverer at once, already leased.
    async fn work(&self) -> Result<Tick, EngineError> {
        self.dispatcher.refresh(&self.store).await?;
        let dispatched = self.dispatcher.pass(&self.store, self.clock.now()).await?;
        let mut executed = executor::Executed::default();
        let fresh = self.dispatcher.take_ready();
        if !fresh.is_empty() {
            // Runs dispatch just created, already leased to us: no claim.
            let claimed = executor::Claimed {
                owner: format!("{}:handoff", self.config.worker_id),
                runs: fresh,
            };
            executed = self
                .executor
                .process(&self.store, claimed, self.clock.now())
                .await?;
            self.hand_deliveries();
        }
        // After dispatch, so audience work never delays an event's trigger;
        // segment joins it records are dispatched on the next tick.
        let audiences = self.audiences.pass(&self.store, self.clock.now()).await?;
        let e = self.executor.pass(&self.store, self.clock.now()).await?;
        self.hand_deliveries();
        executed.claimed += e.claimed;
        executed.advanced += e.advanced;
        executed.lost += e.lost;
        Ok(Tick {
            audiences,
            dispatched,
            executed,
            delivered: 0,
        })
    }

    /// Deliveries the executor wrote go to the deliverer at once, already
    /// leased.
    fn hand_deliveries(&self) {
        let ready = self.executor.take_ready();
        if !ready.is_empty() {
            self.deliverer.start(&self.deliverer.handoff_owner(), ready);
        }
    }

    /// One batch of each kind of work: refresh the flow index if flows
    /// changed, dispatch new feed items, advance due runs, and send the due
    /// webhooks, waiting for every one of them (tests; `serve` runs
    /// delivery in its own loops so a slow endpoint never holds up runs).
    pub async fn tick(&self) -> Result<Tick, EngineError> {
        let mut t = self.work().await?;
        let passed = self.deliverer.pass().await?;
        self.deliverer.settle().await?;
        t.delivered = passed.claimed;
        Ok(t)
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
        let delivery = self.deliverer.clone().spawn(self.config.poll);
        let engine = self;
        let task = tokio::spawn(async move {
            loop {
                if *stopped.borrow() {
                    break;
                }
                let busy = match engine.work().await {
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
                    _ = engine.deliverer.runs_due.notified() => {}
                    _ = tokio::time::sleep(engine.config.poll) => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        Worker {
            task,
            stop,
            delivery,
        }
    }
}

/// The running background loop.
pub struct Worker {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    delivery: outflow_delivery::DeliveryTasks,
}

impl Worker {
    /// Lets the current pass finish (its batch commits), then stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.delivery.stop().await;
    }
}
