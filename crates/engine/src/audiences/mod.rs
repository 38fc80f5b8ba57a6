//! Audiences (issue #5): segment membership kept current
//! ([`segments::SegmentEvaluator`]), the segment trigger as a dispatch feed
//! ([`trigger::SegmentSource`]), add-past-profiles ([`backfill`]), the
//! price-drop trigger ([`price_drop`]) and the date trigger ([`date`]).

pub mod backfill;
pub mod date;
pub mod enrol;
pub mod price_drop;
pub mod segments;
pub mod trigger;

pub use trigger::SegmentSource;

use crate::EngineError;
use chrono::{DateTime, Utc};
use outflow_store::Store;

/// What one audiences pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Worked {
    pub segments: segments::Evaluated,
    /// Backfill profiles and price changes read.
    pub other: usize,
    /// Runs created by backfills and price drops.
    pub runs: usize,
}

impl Worked {
    pub fn is_idle(&self) -> bool {
        self.segments.is_idle() && self.other == 0
    }

    pub fn add(&mut self, o: Worked) {
        self.segments.add(o.segments);
        self.other += o.other;
        self.runs += o.runs;
    }
}

pub struct Audiences {
    pub segments: segments::SegmentEvaluator,
    pub dates: date::DateTriggers,
}

impl Audiences {
    pub fn new(batch: usize) -> Self {
        Self {
            // Feed items are cheap next to a batch's fixed costs (a commit,
            // a few queries): larger batches halve the per-event cost.
            segments: segments::SegmentEvaluator::new(batch * 4),
            dates: date::DateTriggers::new(batch),
        }
    }

    /// Membership, then one add-past-profiles page, one price change and
    /// the date work.
    pub async fn pass(&self, store: &Store, now: DateTime<Utc>) -> Result<Worked, EngineError> {
        let segments = self.segments.pass(store, now).await?;
        let b = backfill::pass(store, now).await?;
        let (p, runs) = price_drop::pass(store, now).await?;
        let d = self.dates.pass(store, now).await?;
        Ok(Worked {
            segments,
            other: b + p + d.read,
            runs: runs + d.runs,
        })
    }
}
