-- Webhook delivery (issue #7): what each delivery belongs to (for the log's
-- filters), the response mapping, every attempt, destinations disabled by
-- a 410, and the account's signing secrets. Kept in step with
-- ../postgres/0007_delivery.sql.
ALTER TABLE deliveries ADD COLUMN flow_id TEXT;
ALTER TABLE deliveries ADD COLUMN profile_id TEXT;
-- JSON [[property, pointer], …]: response fields written to the profile.
ALTER TABLE deliveries ADD COLUMN response_map TEXT;
-- Attempts made before the current series (a manual retry starts a new one).
ALTER TABLE deliveries ADD COLUMN retry_base BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN finished BIGINT;
UPDATE deliveries SET
    flow_id = (SELECT flow_id FROM runs WHERE runs.id = deliveries.run_id),
    profile_id = (SELECT profile_id FROM runs WHERE runs.id = deliveries.run_id);
DROP INDEX deliveries_due;
-- First attempts and retries are claimed from separate queues, so a backlog
-- of retries never starves new deliveries.
CREATE INDEX deliveries_first_due ON deliveries (due) WHERE status = 'pending' AND attempts = 0;
CREATE INDEX deliveries_retry_due ON deliveries (due) WHERE status = 'pending' AND attempts > 0;
CREATE INDEX deliveries_account_created ON deliveries (account_id, created);
CREATE INDEX deliveries_flow_action ON deliveries (flow_id, action_id, created);
CREATE INDEX deliveries_profile ON deliveries (profile_id, created);

CREATE TABLE delivery_attempts (
    delivery_id      TEXT NOT NULL,
    n                BIGINT NOT NULL,
    at               BIGINT NOT NULL,
    -- JSON [[name, value], …] as sent, secrets redacted.
    request_headers  TEXT NOT NULL,
    status_code      BIGINT,
    latency_us       BIGINT,
    response_headers TEXT,
    -- The first 64 KB of the response body.
    response_body    TEXT,
    error            TEXT,
    -- succeeded | retry | skipped | failed | gone | refused
    outcome          TEXT NOT NULL,
    PRIMARY KEY (delivery_id, n)
);

-- A send-webhook action's destination, disabled when it answered 410.
CREATE TABLE webhook_destinations (
    flow_id    TEXT NOT NULL,
    action_id  TEXT NOT NULL,
    account_id TEXT NOT NULL,
    disabled   BIGINT,
    reason     TEXT,
    updated    BIGINT NOT NULL,
    PRIMARY KEY (flow_id, action_id)
);

-- Signing secrets: the newest is current; an older one keeps signing until
-- it expires (the rotation window).
CREATE TABLE signing_secrets (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created    BIGINT NOT NULL,
    expires    BIGINT
);
CREATE INDEX signing_secrets_account ON signing_secrets (account_id, created);

-- The organization's settings, for templates (`organization.url`).
ALTER TABLE accounts ADD COLUMN url TEXT;
