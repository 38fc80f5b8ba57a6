//! Group commit: one writer thread owns the only write connection. Callers
//! hand it jobs; it runs every job that is waiting inside one transaction
//! (each job in its own savepoint, so one failing job does not undo the
//! others), commits once, and only then answers each caller. Under load a
//! single fsync covers hundreds of requests.

use crate::cache::WriteCache;
use crate::db::{Conn, Savepoint};
use crate::StoreError;
use tokio::sync::{mpsc, oneshot};

/// What a job sees: the connection (inside the batch transaction) and the
/// writer's in-memory indexes.
pub struct WriteCtx<'a> {
    pub conn: &'a mut dyn Conn,
    pub cache: &'a mut WriteCache,
}

trait Job: Send {
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool;
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct TypedJob<F, R> {
    f: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Job for TypedJob<F, R>
where
    F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        let r = caught(|| f(ctx));
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let outcome = match (commit, self.result) {
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(r))) => Ok(r),
            (Err(e), Some(Ok(_))) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
            (_, None) => Err(StoreError::Unavailable("job did not run".into())),
        };
        let _ = self.reply.send(outcome);
    }
}

/// Work done at the end of a batch, inside its transaction: the engine
/// dispatches the events a batch ingested in that same commit, so an
/// event's runs and webhooks wait for one durable commit, not two.
pub trait BatchHook: Send {
    /// Runs after the batch's jobs, before COMMIT, in its own savepoint:
    /// an error undoes only the hook's writes. Called only for batches that
    /// stored an event ([`WriteCache::note_event`]).
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError>;
    /// After the batch's COMMIT, before the jobs' callers are answered.
    /// `kept`: `run` succeeded and the commit too, so its writes are
    /// durable; otherwise they are undone (`run` may not even have been
    /// called, or have panicked halfway).
    fn finish(&mut self, kept: bool);
}

type HookSlot = std::sync::Arc<std::sync::Mutex<Option<Box<dyn BatchHook>>>>;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
    hook: HookSlot,
}

/// The longest the writer goes without [`Conn::maintain`] while busy.
const MAINTAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Tells the writer when maintenance is cheap. SQLite's checkpointer sets
/// it after each pass: the writer's own checkpoint then copies only what
/// was committed during that pass (1–3 ms of stalled commits at 1,000
/// events/s), where on the timer alone it copied up to 500 ms of log
/// (2.4–10 ms).
#[derive(Clone, Default)]
pub struct MaintainHint(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl MaintainHint {
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    fn take(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

/// Upper bound on jobs per transaction: keeps a batch's latency bounded.
const MAX_BATCH: usize = 1024;

impl Writer {
    /// Starts the writer thread. It stops when every `Writer` handle is
    /// dropped, after committing what it has; `join` waits for that.
    pub fn start(
        mut conn: Box<dyn Conn>,
        mut cache: WriteCache,
        hint: MaintainHint,
    ) -> (Self, std::thread::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Box<dyn Job>>(16 * MAX_BATCH);
        let hook = HookSlot::default();
        let slot = hook.clone();
        let handle = std::thread::Builder::new()
            .name("outflow-writer".into())
            .spawn(move || {
                let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
                let mut last_maintained = std::time::Instant::now();
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    match slot.lock() {
                        Ok(mut h) => {
                            run_batch(conn.as_mut(), &mut cache, &mut batch, h.as_deref_mut())
                        }
                        Err(_) => run_batch(conn.as_mut(), &mut cache, &mut batch, None),
                    }
                    if hint.take() || last_maintained.elapsed() >= MAINTAIN_EVERY {
                        if let Err(e) = conn.maintain() {
                            tracing::warn!(error = %e, "store maintenance failed");
                        }
                        last_maintained = std::time::Instant::now();
                    }
                }
            })
            .expect("spawning the writer thread");
        (Self { tx, hook }, handle)
    }

    /// Installs (or with `None` removes) the [`BatchHook`]. Waits for the
    /// batch in progress, if any.
    pub fn set_hook(&self, hook: Option<Box<dyn BatchHook>>) {
        match self.hook.lock() {
            Ok(mut h) => *h = hook,
            Err(e) => *e.into_inner() = hook,
        }
    }

    /// Runs `f` in the next group commit and returns its result once the
    /// transaction holding its writes is durable.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut WriteCtx<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(TypedJob {
            f: Some(f),
            result: None,
            reply,
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }
}

/// A panicking job (or hook) fails alone, like a job returning an error: it
/// must not take the writer thread, and with it every later write, down.
fn caught<R>(f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(StoreError::Unavailable("a write panicked".into())))
}

fn run_batch(
    conn: &mut dyn Conn,
    cache: &mut WriteCache,
    batch: &mut Vec<Box<dyn Job>>,
    mut hook: Option<&mut (dyn BatchHook + 'static)>,
) {
    let started = std::time::Instant::now();
    let mut executed = started;
    let mut hook_ok = false;
    let commit = (|| -> Result<(), StoreError> {
        conn.batch("BEGIN")?;
        for job in batch.iter_mut() {
            conn.savepoint(Savepoint::Begin)?;
            let ok = {
                let mut ctx = WriteCtx {
                    conn: &mut *conn,
                    cache: &mut *cache,
                };
                job.run(&mut ctx)
            };
            if ok {
                conn.savepoint(Savepoint::Release)?;
                cache.keep_job();
            } else {
                conn.savepoint(Savepoint::RollBack)?;
                conn.savepoint(Savepoint::Release)?;
                cache.drop_job();
            }
        }
        if !cache.take_event_noted() {
            hook = None;
        }
        if let Some(h) = hook.as_deref_mut() {
            conn.savepoint(Savepoint::Begin)?;
            let r = caught(|| {
                h.run(&mut WriteCtx {
                    conn: &mut *conn,
                    cache: &mut *cache,
                })
            });
            if let Err(e) = &r {
                tracing::warn!(error = %e, "batch hook failed; its writes are undone");
                conn.savepoint(Savepoint::RollBack)?;
                cache.drop_job();
            } else {
                cache.keep_job();
                hook_ok = true;
            }
            conn.savepoint(Savepoint::Release)?;
        }
        executed = std::time::Instant::now();
        conn.batch("COMMIT")?;
        Ok(())
    })();
    tracing::debug!(
        jobs = batch.len(),
        exec_us = (executed - started).as_micros() as u64,
        commit_us = executed.elapsed().as_micros() as u64,
        "group commit"
    );
    match &commit {
        Ok(()) => cache.commit_batch(),
        Err(e) => {
            tracing::error!(error = %e, jobs = batch.len(), "group commit failed");
            let _ = conn.batch("ROLLBACK");
            cache.abort_batch();
        }
    }
    if let Some(h) = hook {
        h.finish(hook_ok && commit.is_ok());
    }
    for job in batch.drain(..) {
        job.finish(commit.as_ref().map(|_| ()));
    }
}
