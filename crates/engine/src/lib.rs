//! Outflow's flow engine (issue #4): [`dispatch`] turns new events and list
//! joins into runs, [`executor`] advances due runs with the pure state
//! machine in `outflow_core::flow`, webhooks go to `outflow_delivery`'s
//! [`Deliverer`], [`facts`] loads what conditions read. All state lives in the store (runs are rows
//! with a due time and a lease), so any number of workers — in one process
//! or several on one PostgreSQL — share the work, and a crashed one loses
//! nothing. All time comes from the injected [`Clock`]: tests move it and
//! call [`Engine::tick`] instead of sleeping.

pub mod at_ingest;
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
    /// Concurrent loops claiming due runs in `serve`.
    pub run_lanes: usize,
    /// On SQLite, `spawn` dispatches events in the transaction that
    /// stores them ([`at_ingest`]); off, the trigger loop does it after.
    pub dispatch_at_ingest: bool,
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
            run_lanes: 2,
            dispatch_at_ingest: true,
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
    runs_wake: Notify,
    audiences_wake: Notify,
    /// The writer's batch hook dispatches events ([`at_ingest`]).
    at_ingest: std::sync::atomic::AtomicBool,
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
            runs_wake: Notify::new(),
            audiences_wake: Notify::new(),
            at_ingest: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Dispatch and the runs it created, advanced at once: the latency
    /// path from an event to its first step. One transaction holds the
    /// pass's cursor moves, the new runs and their first steps and effects
    /// (deliveries go to the deliverer after it commits).
    async fn triggers(&self) -> Result<Tick, EngineError> {
        let now = self.clock.now();
        let planned = self.dispatcher.plan(&self.store, now).await?;
        let mut t = Tick::default();
        if planned.is_empty() {
            return Ok(t);
        }
        for p in &planned {
            let d = p.dispatched();
            t.dispatched.items += d.items;
            t.dispatched.runs += d.runs;
        }
        let (batches, _) = self.prepare_planned(planned, now);
        match commit_planned(self.store.clone(), batches).await {
            Ok(written) => t.executed = self.land(written),
            // Another dispatcher took a batch; the pass is discarded whole.
            Err(StoreError::Conflict(_)) => t.dispatched = dispatch::Dispatched::default(),
            Err(e) => return Err(e.into()),
        }
        Ok(t)
    }

    /// Advances planned runs in memory ([`executor::Executor::prepare_fresh`]);
    /// also returns what the batches change for a plan made before they
    /// commit.
    fn prepare_planned(
        &self,
        planned: Vec<dispatch::Planned>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (
        Vec<(dispatch::Planned, executor::Prepared)>,
        dispatch::Carry,
    ) {
        let mut carry = dispatch::Carry::default();
        let mut batches = Vec::with_capacity(planned.len());
        for p in planned {
            let claimed = executor::Claimed {
                owner: format!("{}:handoff", self.config.worker_id),
                runs: p.leased_rows(),
            };
            let prepared = self.executor.prepare_fresh(claimed, p.fresh(), now);
            carry.add(&p, &prepared.active_after());
            batches.push((p, prepared));
        }
        (batches, carry)
    }

    /// Counts written batches and hands their deliveries to the deliverer.
    fn land(&self, written: Vec<executor::Written>) -> executor::Executed {
        let mut x = executor::Executed::default();
        for w in written {
            let e = self.executor.written(w);
            x.claimed += e.claimed;
            x.advanced += e.advanced;
            x.lost += e.lost;
        }
        self.hand_deliveries();
        x
    }

    /// [`Engine::triggers`] as a pipeline (`serve`): while one batch's
    /// transaction commits, the next is read, planned and advanced in
    /// memory — from where that batch leaves the cursors, counting its runs
    /// as entered ([`dispatch::Carry`]). A batch whose write fails takes
    /// the batch planned after it along; planning starts again from the
    /// database.
    async fn trigger_loop(self: Arc<Self>, mut stopped: tokio::sync::watch::Receiver<bool>) {
        type Landing = tokio::task::JoinHandle<Result<Vec<executor::Written>, StoreError>>;
        let mut in_flight: Option<(Landing, dispatch::Carry)> = None;
        loop {
            let carry = in_flight.as_ref().map(|f| f.1.clone()).unwrap_or_default();
            let now = self.clock.now();
            let planned = self.dispatcher.plan_with(&self.store, now, &carry).await;
            let mut landed_ok = true;
            if let Some((landing, _)) = in_flight.take() {
                landed_ok = match landing.await {
                    Ok(Ok(written)) => {
                        if self.land(written).claimed > 0 {
                            self.runs_wake.notify_one();
                        }
                        true
                    }
                    // Another dispatcher took the batch.
                    Ok(Err(StoreError::Conflict(_))) => false,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "dispatch write failed");
                        tokio::time::sleep(self.config.poll).await;
                        false
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "dispatch write task failed");
                        tokio::time::sleep(self.config.poll).await;
                        false
                    }
                };
            }
            if *stopped.borrow() {
                // What was planned is dropped unwritten: nothing moved.
                break;
            }
            let planned = match planned {
                // Planned on top of a batch that was not written: plan again.
                Ok(_) if !landed_ok => continue,
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "dispatch planning failed");
                    Vec::new()
                }
            };
            if planned.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = stopped.changed() => {}
                }
                continue;
            }
            let (batches, next) = self.prepare_planned(planned, now);
            let landing = tokio::spawn(commit_planned(self.store.clone(), batches));
            in_flight = Some((landing, next));
        }
    }

    /// Dispatch, audiences and one batch of due runs, in that order (what
    /// the background loops do concurrently, done once in series).
    async fn work(&self) -> Result<Tick, EngineError> {
        let mut t = self.triggers().await?;
        // After dispatch, so audience work never delays an event's trigger;
        // segment joins it records are dispatched on the next tick.
        t.audiences = self.audiences.pass(&self.store, self.clock.now()).await?;
        let e = self.executor.pass(&self.store, self.clock.now()).await?;
        self.hand_deliveries();
        t.executed.claimed += e.claimed;
        t.executed.advanced += e.advanced;
        t.executed.lost += e.lost;
        Ok(t)
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

    /// Wakes the background loops early (new events, joins, flow changes).
    pub fn notify(&self) {
        self.wake.notify_one();
        self.audiences_wake.notify_one();
    }

    /// [`Engine::notify`] after storing events: when they were dispatched
    /// in their own transaction, the trigger loop has nothing to read (it
    /// would spend a read per request finding that out).
    pub fn notify_events(&self) {
        if !self.at_ingest.load(std::sync::atomic::Ordering::Acquire) {
            self.wake.notify_one();
        }
        self.audiences_wake.notify_one();
    }

    /// Starts the background loops, each a pass and — if it found nothing
    /// — a wait for its wake-up or the poll interval:
    /// - triggers: dispatch new feed items and advance the runs it created
    ///   (the latency path from an event to its first step);
    /// - runs: `run_lanes` loops claiming due runs, so one lane's reads
    ///   and computing overlap another's commit;
    /// - audiences: segment membership, date and price-drop work;
    /// - delivery (the deliverer's own loops).
    ///
    /// Every loop commits through the store's one writer, so their
    /// transactions share group commits instead of waiting on each other.
    ///
    /// The flows are indexed first: the writer's batch hook plans only with
    /// a current index and never builds one, so without it the first
    /// events would wait for the trigger loop.
    pub async fn spawn(self: Arc<Self>) -> Worker {
        if let Err(e) = self.dispatcher.refresh(&self.store).await {
            tracing::warn!(error = %e, "indexing the flows failed; the trigger loop retries");
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let delivery = self.deliverer.clone().spawn(self.config.poll);
        let hooked = self.config.dispatch_at_ingest
            && self.store.dialect() == outflow_store::db::Dialect::Sqlite;
        if hooked {
            self.store
                .set_batch_hook(Some(Box::new(at_ingest::IngestHook::new(
                    Arc::downgrade(&self),
                    tokio::runtime::Handle::current(),
                ))));
            self.at_ingest
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let mut tasks = Vec::new();
        let e = self.clone();
        tasks.push(tokio::spawn(e.trigger_loop(stopped.clone())));
        for _ in 0..self.config.run_lanes.max(1) {
            let e = self.clone();
            tasks.push(background(
                stopped.clone(),
                self.config.poll,
                move || {
                    let e = e.clone();
                    async move {
                        let x = e.executor.pass(&e.store, e.clock.now()).await?;
                        e.hand_deliveries();
                        Ok(x.claimed > 0)
                    }
                },
                {
                    let e = self.clone();
                    move || {
                        let e = e.clone();
                        async move {
                            tokio::select! {
                                _ = e.runs_wake.notified() => {}
                                _ = e.deliverer.runs_due.notified() => {}
                            }
                        }
                    }
                },
            ));
        }
        let e = self.clone();
        tasks.push(background(
            stopped.clone(),
            self.config.poll,
            move || {
                let e = e.clone();
                async move {
                    let w = e.audiences.pass(&e.store, e.clock.now()).await?;
                    if !w.is_idle() {
                        // Segment joins and price drops it recorded are feed items.
                        e.wake.notify_one();
                    }
                    Ok(!w.is_idle())
                }
            },
            {
                let e = self.clone();
                move || {
                    let e = e.clone();
                    async move { e.audiences_wake.notified().await }
                }
            },
        ));
        Worker {
            tasks,
            stop,
            delivery,
            hooked: hooked.then(|| self.clone()),
        }
    }
}

/// Writes a pass's planned batches and their runs' first steps in one
/// transaction.
async fn commit_planned(
    store: Store,
    batches: Vec<(dispatch::Planned, executor::Prepared)>,
) -> Result<Vec<executor::Written>, StoreError> {
    // The plans go back out with the results: freeing their facts and
    // rows is the caller's work, not the one writer thread's.
    let (written, planned) = store
        .write(move |ctx| {
            let mut written = Vec::with_capacity(batches.len());
            let mut planned = Vec::with_capacity(batches.len());
            for (p, prepared) in batches {
                written.push(p.commit_advanced(ctx, prepared)?);
                planned.push(p);
            }
            Ok((written, planned))
        })
        .await?;
    drop(planned);
    Ok(written)
}

/// One background loop: `pass` until it finds nothing, then wait for
/// `woken`, the poll interval or the stop signal.
fn background<P, PF, W, WF>(
    mut stopped: tokio::sync::watch::Receiver<bool>,
    poll: std::time::Duration,
    pass: P,
    woken: W,
) -> tokio::task::JoinHandle<()>
where
    P: Fn() -> PF + Send + 'static,
    PF: std::future::Future<Output = Result<bool, EngineError>> + Send,
    W: Fn() -> WF + Send + 'static,
    WF: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            if *stopped.borrow() {
                break;
            }
            let busy = match pass().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "engine pass failed");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = woken() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stopped.changed() => break,
            }
        }
    })
}

/// The running background loop.
pub struct Worker {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    delivery: outflow_delivery::DeliveryTasks,
    /// The engine whose batch hook this worker installed.
    hooked: Option<Arc<Engine>>,
}

impl Worker {
    /// Lets the current pass finish (its batch commits), then stops.
    pub async fn stop(self) {
        if let Some(e) = &self.hooked {
            e.store.set_batch_hook(None);
            e.at_ingest
                .store(false, std::sync::atomic::Ordering::Release);
        }
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.delivery.stop().await;
    }
}
