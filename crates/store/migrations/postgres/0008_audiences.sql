-- Audiences (issue #5). Kept in step with ../sqlite/0008_audiences.sql,
-- which explains each table.
CREATE TABLE segments (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    name          TEXT NOT NULL,
    definition    TEXT NOT NULL,
    is_active     BIGINT NOT NULL DEFAULT 1,
    is_starred    BIGINT NOT NULL DEFAULT 0,
    version       BIGINT NOT NULL DEFAULT 1,
    built_version BIGINT NOT NULL DEFAULT 0,
    build_after   TEXT,
    build_organic BIGINT NOT NULL DEFAULT 0,
    swept         BIGINT NOT NULL DEFAULT 0,
    created       BIGINT NOT NULL,
    updated       BIGINT NOT NULL
);
CREATE INDEX segments_account ON segments (account_id, id);

CREATE TABLE segment_members (
    segment_id TEXT NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    profile_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    joined     BIGINT NOT NULL,
    PRIMARY KEY (segment_id, profile_id)
);
CREATE INDEX segment_members_profile ON segment_members (profile_id);

CREATE TABLE segment_changes (
    seq        BIGSERIAL PRIMARY KEY,
    account_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    entered    BIGINT NOT NULL,
    organic    BIGINT NOT NULL,
    at         BIGINT NOT NULL
);

CREATE TABLE profile_changes (
    seq        BIGSERIAL PRIMARY KEY,
    account_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    list_id    TEXT,
    created    BIGINT NOT NULL DEFAULT 0
);

CREATE FUNCTION outflow_profile_changed() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM segments WHERE account_id = NEW.account_id)
       OR EXISTS (SELECT 1 FROM flows WHERE account_id = NEW.account_id AND trigger_type = 'date') THEN
        INSERT INTO profile_changes (account_id, profile_id, created)
            VALUES (NEW.account_id, NEW.id, CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE 0 END);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE FUNCTION outflow_list_member_changed() RETURNS trigger AS $$
DECLARE
    r list_members%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF EXISTS (SELECT 1 FROM segments WHERE account_id = r.account_id) THEN
        INSERT INTO profile_changes (account_id, profile_id, list_id)
            VALUES (r.account_id, r.profile_id, r.list_id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER profile_changes_insert AFTER INSERT ON profiles
    FOR EACH ROW EXECUTE FUNCTION outflow_profile_changed();
CREATE TRIGGER profile_changes_update AFTER UPDATE ON profiles
    FOR EACH ROW WHEN (OLD.attributes IS DISTINCT FROM NEW.attributes
        OR OLD.properties IS DISTINCT FROM NEW.properties
        OR OLD.email IS DISTINCT FROM NEW.email
        OR OLD.phone_number IS DISTINCT FROM NEW.phone_number
        OR OLD.external_id IS DISTINCT FROM NEW.external_id
        OR OLD.subscriptions IS DISTINCT FROM NEW.subscriptions)
    EXECUTE FUNCTION outflow_profile_changed();
CREATE TRIGGER profile_changes_join AFTER INSERT ON list_members
    FOR EACH ROW EXECUTE FUNCTION outflow_list_member_changed();
CREATE TRIGGER profile_changes_leave AFTER DELETE ON list_members
    FOR EACH ROW EXECUTE FUNCTION outflow_list_member_changed();

CREATE TABLE flow_backfills (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    flow_id    TEXT NOT NULL,
    after      TEXT,
    status     TEXT NOT NULL,
    enrolled   BIGINT NOT NULL DEFAULT 0,
    created    BIGINT NOT NULL,
    updated    BIGINT NOT NULL
);
CREATE INDEX flow_backfills_status ON flow_backfills (status, created);

CREATE TABLE date_trigger_fired (
    flow_id    TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    occurrence TEXT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (flow_id, profile_id, occurrence)
);

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
);
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

INSERT INTO dispatch_cursors (feed, position, updated)
    SELECT 'segments:events', COALESCE(MAX(seq), 0), 0 FROM events;
INSERT INTO dispatch_cursors (feed, position, updated) VALUES ('segments:profiles', 0, 0);
INSERT INTO dispatch_cursors (feed, position, updated) VALUES ('dates:profiles', 0, 0);
INSERT INTO dispatch_cursors (feed, position, updated) VALUES ('segment_changes', 0, 0);
INSERT INTO dispatch_cursors (feed, position, updated)
    SELECT 'catalog_price_history', COALESCE(MAX(seq), 0), 0 FROM catalog_price_history;
