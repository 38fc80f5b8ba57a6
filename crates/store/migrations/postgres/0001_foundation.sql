-- Times are microseconds since the Unix epoch (UTC); booleans are 0/1;
-- JSON documents are TEXT. Kept in step with ../sqlite/0001_foundation.sql.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL UNIQUE,
    settings    TEXT NOT NULL DEFAULT '{}',
    created     BIGINT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    email         TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT,
    created       BIGINT NOT NULL,
    UNIQUE (account_id, email)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created     BIGINT NOT NULL,
    revoked     BIGINT
);

CREATE TABLE profiles (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    email         TEXT,
    phone_number  TEXT,
    external_id   TEXT,
    anonymous_id  TEXT,
    attributes    TEXT NOT NULL DEFAULT '{}',
    properties    TEXT NOT NULL DEFAULT '{}',
    subscriptions TEXT NOT NULL DEFAULT '{}',
    created       BIGINT NOT NULL,
    updated       BIGINT NOT NULL
);
CREATE UNIQUE INDEX profiles_email ON profiles (account_id, email);
CREATE UNIQUE INDEX profiles_phone ON profiles (account_id, phone_number);
CREATE UNIQUE INDEX profiles_external ON profiles (account_id, external_id);
CREATE INDEX profiles_anonymous ON profiles (account_id, anonymous_id);
CREATE INDEX profiles_updated ON profiles (account_id, updated, id);

CREATE TABLE metrics (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    integration TEXT,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

-- seq orders events for the trigger dispatcher (a change feed).
CREATE TABLE events (
    seq            BIGSERIAL PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    metric_id      TEXT NOT NULL REFERENCES metrics(id),
    profile_id     TEXT NOT NULL REFERENCES profiles(id),
    time           BIGINT NOT NULL,
    value          DOUBLE PRECISION,
    value_currency TEXT,
    unique_key     TEXT NOT NULL,
    properties     TEXT NOT NULL,
    backfill       BIGINT NOT NULL DEFAULT 0,
    created        BIGINT NOT NULL,
    -- Deduplication, and a profile's events of one metric (profile ids are
    -- unique across accounts, so the account is implied).
    UNIQUE (profile_id, metric_id, unique_key)
);
-- Kept to two secondary indexes: every index is paid on the ingest hot path.
CREATE INDEX events_time ON events (account_id, time, id);

CREATE TABLE lists (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    name            TEXT NOT NULL,
    opt_in_process  TEXT NOT NULL DEFAULT 'single_opt_in',
    created         BIGINT NOT NULL,
    updated         BIGINT NOT NULL
);
CREATE INDEX lists_account ON lists (account_id, id);

-- seq orders joins for the list trigger; historical_import joins never trigger flows.
CREATE TABLE list_members (
    seq               BIGSERIAL PRIMARY KEY,
    list_id           TEXT NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    profile_id        TEXT NOT NULL REFERENCES profiles(id),
    account_id        TEXT NOT NULL,
    joined            BIGINT NOT NULL,
    source            TEXT NOT NULL,
    historical_import BIGINT NOT NULL DEFAULT 0,
    UNIQUE (list_id, profile_id)
);
CREATE INDEX list_members_profile ON list_members (profile_id);

CREATE TABLE catalog_items (
    id                  TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL REFERENCES accounts(id),
    external_id         TEXT NOT NULL,
    integration_type    TEXT NOT NULL,
    catalog_type        TEXT NOT NULL,
    attributes          TEXT NOT NULL,
    price               DOUBLE PRECISION,
    created             BIGINT NOT NULL,
    updated             BIGINT NOT NULL,
    UNIQUE (account_id, integration_type, catalog_type, external_id)
);
CREATE INDEX catalog_items_account ON catalog_items (account_id, id);

CREATE TABLE catalog_price_history (
    seq         BIGSERIAL PRIMARY KEY,
    account_id  TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    old_price   DOUBLE PRECISION,
    new_price   DOUBLE PRECISION,
    changed     BIGINT NOT NULL
);
CREATE INDEX catalog_price_history_item ON catalog_price_history (item_id, changed);

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}',
    created     BIGINT NOT NULL
);
