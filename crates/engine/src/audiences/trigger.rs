//! The `segment` trigger as a dispatch feed: every join recorded in
//! `segment_changes`. Joins made by building a new or edited definition,
//! and every leave, arrive suppressed, so they move the cursor and start
//! nothing. A profile that was already a member when the flow went live has
//! no join after that moment, so it never enters (Klaviyo's rule); leaving
//! and joining again is a new join.

use crate::dispatch::{Occurrence, TriggerSource};
use outflow_store::db::Conn;
use outflow_store::segments::{self, FEED_CHANGES};
use outflow_store::{params, StoreError};

pub struct SegmentSource;

impl TriggerSource for SegmentSource {
    fn feed(&self) -> &'static str {
        FEED_CHANGES
    }

    fn trigger_type(&self) -> &'static str {
        "segment"
    }

    fn head(&self, conn: &mut dyn Conn) -> Result<i64, StoreError> {
        segments::head(conn, "segment_changes")
    }

    fn prune(&self, conn: &mut dyn Conn, upto: i64) -> Result<(), StoreError> {
        segments::prune_changes(conn, upto)
    }

    fn fetch(
        &self,
        conn: &mut dyn Conn,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Occurrence>, StoreError> {
        let sql = format!(
            "SELECT seq, account_id, segment_id, profile_id, entered, organic FROM segment_changes \
             WHERE seq > $1 ORDER BY seq LIMIT {limit}"
        );
        conn.query(&sql, params![after])?
            .iter()
            .map(|r| {
                Ok(Occurrence {
                    seq: r.int(0)?,
                    account_id: r.text(1)?,
                    trigger_type: "segment",
                    trigger_ref: r.text(2)?,
                    profile_id: r.text(3)?,
                    event_id: None,
                    event: None,
                    suppressed: !(r.bool(4)? && r.bool(5)?),
                })
            })
            .collect()
    }
}
