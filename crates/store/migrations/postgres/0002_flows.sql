-- Flows and their immutable definition versions. A run stays on the
-- version it entered with; saving a changed definition adds a version.
-- trigger_ref is what the trigger listens to: the metric id of a metric
-- trigger, the list id of a list trigger, the segment id, …
CREATE TABLE flows (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    name         TEXT NOT NULL,
    status       TEXT NOT NULL,
    archived     BIGINT NOT NULL DEFAULT 0,
    trigger_type TEXT NOT NULL,
    trigger_ref  TEXT,
    version      BIGINT NOT NULL,
    created      BIGINT NOT NULL,
    updated      BIGINT NOT NULL
);
CREATE INDEX flows_account ON flows (account_id, id);
CREATE INDEX flows_trigger ON flows (account_id, trigger_type, trigger_ref);

CREATE TABLE flow_versions (
    flow_id    TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    definition TEXT NOT NULL,
    created    BIGINT NOT NULL,
    PRIMARY KEY (flow_id, version)
);
