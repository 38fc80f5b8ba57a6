-- Flow runs (issue #4). A run is one profile's trip through one flow
-- version; it is a row with a due time and a lease so any worker can claim
-- it and a crashed worker's claim expires. Kept in step with
-- ../sqlite/0003_runs.sql.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL,
    flow_id          TEXT NOT NULL,
    flow_version     BIGINT NOT NULL,
    profile_id       TEXT NOT NULL,
    trigger_event_id TEXT,
    current_action   TEXT,
    -- running | waiting | awaiting-delivery | needs-review | done | exited
    state            TEXT NOT NULL,
    exit_reason      TEXT,
    -- NULL while the run waits for an outside input or has ended.
    due              BIGINT,
    -- An outside input waiting to be applied: release | cancel | delivered | skipped.
    input            TEXT,
    lease_owner      TEXT,
    lease_until      BIGINT,
    entered          BIGINT NOT NULL,
    -- The trigger event's properties (JSON), for trigger splits and templates.
    event            TEXT,
    active           BIGINT NOT NULL DEFAULT 1,
    -- Steps recorded so far (the next run_steps.n).
    step_count       BIGINT NOT NULL DEFAULT 0,
    updated          BIGINT NOT NULL
);
CREATE INDEX runs_due ON runs (due) WHERE due IS NOT NULL;
CREATE INDEX runs_flow_profile ON runs (flow_id, profile_id, entered);
CREATE INDEX runs_profile ON runs (profile_id, entered);
CREATE INDEX runs_review ON runs (flow_id, current_action) WHERE state = 'needs-review';

-- What happened at each action of a run, in order.
CREATE TABLE run_steps (
    run_id    TEXT NOT NULL,
    n         BIGINT NOT NULL,
    action_id TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    at        BIGINT NOT NULL,
    detail    TEXT,
    PRIMARY KEY (run_id, n)
);

-- One row per performed effect: the key that makes a retried step a no-op.
CREATE TABLE run_effects (
    run_id    TEXT NOT NULL,
    action_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (run_id, action_id)
);

-- The webhook outbox. UNIQUE (run_id, action_id): a retried step never
-- produces a second delivery.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    action_id        TEXT NOT NULL,
    url              TEXT NOT NULL,
    method           TEXT NOT NULL,
    headers          TEXT NOT NULL,
    body             TEXT NOT NULL,
    -- pending | succeeded | skipped
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_status_code BIGINT,
    last_error       TEXT,
    due              BIGINT,
    lease_owner      TEXT,
    lease_until      BIGINT,
    created          BIGINT NOT NULL,
    updated          BIGINT NOT NULL,
    UNIQUE (run_id, action_id)
);
CREATE INDEX deliveries_due ON deliveries (due) WHERE status = 'pending';

-- How far trigger dispatch has read each feed (events seq, list_members
-- seq). Starts at the current end so history never triggers new flows.
CREATE TABLE dispatch_cursors (
    feed     TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated  BIGINT NOT NULL
);
INSERT INTO dispatch_cursors (feed, position, updated)
    SELECT 'events', COALESCE(MAX(seq), 0), 0 FROM events;
INSERT INTO dispatch_cursors (feed, position, updated)
    SELECT 'list_members', COALESCE(MAX(seq), 0), 0 FROM list_members;
