//! Dispatch at ingest (SQLite): the writer's batch hook plans and advances
//! the runs of the events a batch stored, inside that batch's transaction.
//! An event's webhook then waits for one durable commit instead of two
//! (the ingest commit, then dispatch's), and the planning read-back of the
//! events is gone.
//!
//! The trigger loop still follows the events feed: it takes a backlog
//! longer than [`CAP`] and whatever the hook could not write. The
//! cursor's compare-and-set keeps the two from creating the same runs: a
//! batch the trigger loop planned from a cursor the hook has since moved
//! is dropped whole and planned again.
//!
//! Not on PostgreSQL: there other processes insert events too, and a `seq`
//! taken by a transaction not yet committed would be passed over.

use crate::dispatch::AtIngest;
use crate::{executor, Engine};
use outflow_store::writer::BatchHook;
use outflow_store::{StoreError, WriteCtx};
use std::sync::Weak;

/// The most unplanned events the hook takes on in one batch. Group commits
/// of single events stay under it; a bulk job (up to 1,000 events) goes to
/// the trigger loop, whose pipeline plans one batch while the writer
/// commits another. With a cap of 4,096 the writer did both in series and
/// bulk ingest slowed: two runs gave 7.8k and 9.9k deliveries/s with the
/// cores 56% and 81% busy, against 9.6k and 9.8k at 256.
pub const CAP: i64 = 256;

pub(crate) struct IngestHook {
    engine: Weak<Engine>,
    /// `finish` runs on the writer thread; handing deliveries over spawns
    /// their tasks on the engine's runtime.
    runtime: tokio::runtime::Handle,
    written: Vec<executor::Written>,
    /// Events were left for the trigger loop.
    left: bool,
}

impl IngestHook {
    pub(crate) fn new(engine: Weak<Engine>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            engine,
            runtime,
            written: Vec::new(),
            left: false,
        }
    }

    fn dispatch(&mut self, engine: &Engine, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        let now = engine.clock.now();
        let Some(index) = engine.dispatcher.current_in(ctx.conn)? else {
            // The trigger loop rebuilds the index off this thread and
            // dispatches what is stored meanwhile.
            self.left = true;
            return Ok(());
        };
        loop {
            match engine
                .dispatcher
                .plan_events_in(ctx.conn, &index, now, CAP)?
            {
                AtIngest::Idle => return Ok(()),
                AtIngest::Backlog => {
                    self.left = true;
                    return Ok(());
                }
                AtIngest::Planned(p) => {
                    let (batches, _) = engine.prepare_planned(vec![*p], now);
                    for (p, prepared) in batches {
                        self.written.push(p.commit_advanced(ctx, prepared)?);
                    }
                }
            }
        }
    }
}

impl BatchHook for IngestHook {
    fn run(&mut self, ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
        let Some(engine) = self.engine.upgrade() else {
            return Ok(());
        };
        self.dispatch(&engine, ctx)
    }

    fn finish(&mut self, kept: bool) {
        let written = std::mem::take(&mut self.written);
        let mut left = std::mem::take(&mut self.left);
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        if kept {
            if !written.is_empty() {
                let _in_runtime = self.runtime.enter();
                if engine.land(written).claimed > 0 {
                    engine.runs_wake.notify_one();
                }
            }
        } else {
            left = true;
        }
        if left {
            engine.wake.notify_one();
        }
    }
}
