-- When each flow last went live or manual from draft (or was created so),
-- and how far its trigger's feed (events, list_members or segment_changes)
-- had got at that moment. Dispatch skips feed items at or below
-- went_live_seq for the flow: an event or list join recorded while the flow
-- was draft never starts it, even when the dispatcher's cursor is still
-- behind (a backlog) when it goes live. A trigger edited while the flow is
-- live or manual moves went_live_seq to the new feed's head.
-- Flows from before this migration keep 0 (nothing skipped, as before).
ALTER TABLE flows ADD COLUMN went_live BIGINT;
ALTER TABLE flows ADD COLUMN went_live_seq BIGINT NOT NULL DEFAULT 0;
