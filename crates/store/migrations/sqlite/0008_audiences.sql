-- Audiences (issue #5): segments, their members, the feed of membership
-- changes the segment trigger follows, the feed of profile changes that
-- re-evaluates segments, and the bookkeeping of date and price-drop
-- triggers. Kept in step with ../postgres/0008_audiences.sql.
CREATE TABLE segments (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    name          TEXT NOT NULL,
    definition    TEXT NOT NULL,
    is_active     BIGINT NOT NULL DEFAULT 1,
    is_starred    BIGINT NOT NULL DEFAULT 0,
    -- Bumped when the definition changes: membership is rebuilt to match.
    version       BIGINT NOT NULL DEFAULT 1,
    -- The version whose full build has finished (is_processing while behind).
    built_version BIGINT NOT NULL DEFAULT 0,
    -- Keyset position (profile id) of the running full evaluation.
    build_after   TEXT,
    -- Whether the running full evaluation's changes may trigger flows (a
    -- re-evaluation as time passes) or not (a new or edited definition).
    build_organic BIGINT NOT NULL DEFAULT 0,
    -- Clock time up to which time-dependent conditions were re-evaluated.
    swept         BIGINT NOT NULL DEFAULT 0,
    created       BIGINT NOT NULL,
    updated       BIGINT NOT NULL
);
CREATE INDEX segments_account ON segments (account_id, id);

-- WITHOUT ROWID: the profile index then covers "which segments is this
-- profile in", one B-tree descent per profile on the evaluation path.
CREATE TABLE segment_members (
    segment_id TEXT NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    profile_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    joined     BIGINT NOT NULL,
    PRIMARY KEY (segment_id, profile_id)
) WITHOUT ROWID;
CREATE INDEX segment_members_profile ON segment_members (profile_id);

-- Every join and leave, in order; the segment trigger follows the joins.
-- organic = 0 for changes made by building a new or edited definition,
-- which never trigger flows (Klaviyo's rule).
CREATE TABLE segment_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    entered    BIGINT NOT NULL,
    organic    BIGINT NOT NULL,
    at         BIGINT NOT NULL
);

-- Profiles whose attributes, properties or list memberships changed, for
-- segment re-evaluation. Written by triggers so every path (API, flows'
-- update-profile and list-update, imports) is seen; only while the account
-- has segments (or, for profile edits, date flows), so others pay nothing.
CREATE TABLE profile_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    -- NULL for the profile itself, else the list joined or left.
    list_id    TEXT,
    -- 1 for a new profile: every segment may hold it.
    created    BIGINT NOT NULL DEFAULT 0
);
CREATE TRIGGER profile_changes_insert AFTER INSERT ON profiles
WHEN (EXISTS (SELECT 1 FROM segments WHERE account_id = NEW.account_id)
     OR EXISTS (SELECT 1 FROM flows WHERE account_id = NEW.account_id AND trigger_type = 'date'))
BEGIN
    INSERT INTO profile_changes (account_id, profile_id, created) VALUES (NEW.account_id, NEW.id, 1);
END;
CREATE TRIGGER profile_changes_update AFTER UPDATE ON profiles
WHEN (OLD.attributes IS NOT NEW.attributes OR OLD.properties IS NOT NEW.properties
      OR OLD.email IS NOT NEW.email OR OLD.phone_number IS NOT NEW.phone_number
      OR OLD.external_id IS NOT NEW.external_id OR OLD.subscriptions IS NOT NEW.subscriptions)
  AND (EXISTS (SELECT 1 FROM segments WHERE account_id = NEW.account_id)
     OR EXISTS (SELECT 1 FROM flows WHERE account_id = NEW.account_id AND trigger_type = 'date'))
BEGIN
    INSERT INTO profile_changes (account_id, profile_id) VALUES (NEW.account_id, NEW.id);
END;
CREATE TRIGGER profile_changes_join AFTER INSERT ON list_members
WHEN EXISTS (SELECT 1 FROM segments WHERE account_id = NEW.account_id)
BEGIN
    INSERT INTO profile_changes (account_id, profile_id, list_id)
        VALUES (NEW.account_id, NEW.profile_id, NEW.list_id);
END;
CREATE TRIGGER profile_changes_leave AFTER DELETE ON list_members
WHEN EXISTS (SELECT 1 FROM segments WHERE account_id = OLD.account_id)
BEGIN
    INSERT INTO profile_changes (account_id, profile_id, list_id)
        VALUES (OLD.account_id, OLD.profile_id, OLD.list_id);
END;

-- POST /outflow/v1/flows/{id}/add-past-profiles: enrols a segment's or
-- list's current members, a page at a time, by the engine.
CREATE TABLE flow_backfills (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    flow_id    TEXT NOT NULL,
    -- Keyset position (profile id); NULL before the first page.
    after      TEXT,
    status     TEXT NOT NULL,
    enrolled   BIGINT NOT NULL DEFAULT 0,
    created    BIGINT NOT NULL,
    updated    BIGINT NOT NULL
);
CREATE INDEX flow_backfills_status ON flow_backfills (status, created);

-- One row per date-trigger firing: (flow, profile, occurrence date) is the
-- key that makes the daily pass idempotent.
CREATE TABLE date_trigger_fired (
    flow_id    TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    occurrence TEXT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (flow_id, profile_id, occurrence)
) WITHOUT ROWID;

-- The date trigger's index: each profile's date under each property a date
-- flow reads, keyed so the daily pass looks up only the profiles whose date
-- can match (annual: month and day; monthly: day; weekly: weekday; never:
-- the date). Kept current from profile_changes.
CREATE TABLE profile_dates (
    account_id   TEXT NOT NULL,
    property     TEXT NOT NULL,
    profile_id   TEXT NOT NULL,
    month_day    BIGINT NOT NULL,
    day_of_month BIGINT NOT NULL,
    weekday      BIGINT NOT NULL,
    date         TEXT NOT NULL,
    PRIMARY KEY (account_id, property, profile_id)
) WITHOUT ROWID;
CREATE INDEX profile_dates_month_day ON profile_dates (account_id, property, month_day);
CREATE INDEX profile_dates_day ON profile_dates (account_id, property, day_of_month);
CREATE INDEX profile_dates_weekday ON profile_dates (account_id, property, weekday);
CREATE INDEX profile_dates_date ON profile_dates (account_id, property, date);

-- Which (account, property) pairs the index covers: a new date flow's
-- property is indexed over every profile once, a page at a time.
CREATE TABLE profile_date_builds (
    account_id TEXT NOT NULL,
    property   TEXT NOT NULL,
    after      TEXT,
    done       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, property)
);

-- Feeds start at their current end: history never re-triggers anything.
INSERT INTO dispatch_cursors (feed, position, updated)
    SELECT 'segments:events', COALESCE(MAX(seq), 0), 0 FROM events;
INSERT INTO dispatch_cursors (feed, position, updated) VALUES ('segments:profiles', 0, 0);
INSERT INTO dispatch_cursors (feed, position, updated) VALUES ('dates:profiles', 0, 0);
INSERT INTO dispatch_cursors (feed, position, updated) VALUES ('segment_changes', 0, 0);
INSERT INTO dispatch_cursors (feed, position, updated)
    SELECT 'catalog_price_history', COALESCE(MAX(seq), 0), 0 FROM catalog_price_history;
