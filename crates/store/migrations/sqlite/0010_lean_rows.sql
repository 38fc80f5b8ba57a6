-- Fewer b-trees per row on the ingest and delivery paths (issue #7): every
-- index entry is a b-tree insert paid on the writer's hot path.
--
-- Identifier indexes hold only profiles that have that identifier (most
-- profiles have an email and no phone, external or anonymous id). Lookups
-- are `col = $x` or `col IN (…)`, which imply `col IS NOT NULL`, so SQLite
-- and PostgreSQL still use them; uniqueness is unchanged (NULLs never
-- conflicted).
DROP INDEX profiles_email;
DROP INDEX profiles_phone;
DROP INDEX profiles_external;
DROP INDEX profiles_anonymous;
CREATE UNIQUE INDEX profiles_email ON profiles (account_id, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX profiles_phone ON profiles (account_id, phone_number) WHERE phone_number IS NOT NULL;
CREATE UNIQUE INDEX profiles_external ON profiles (account_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX profiles_anonymous ON profiles (account_id, anonymous_id) WHERE anonymous_id IS NOT NULL;

-- Small rows keyed by (run, n) or (run, action) live in their key's order:
-- one b-tree instead of a rowid table plus the key's index. (Not
-- delivery_attempts: its rows are large, and large rows in a WITHOUT ROWID
-- b-tree cost more splits than the second b-tree saves — measured.)
CREATE TABLE run_steps_lean (
    run_id    TEXT NOT NULL,
    n         BIGINT NOT NULL,
    action_id TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    at        BIGINT NOT NULL,
    detail    TEXT,
    PRIMARY KEY (run_id, n)
) WITHOUT ROWID;
INSERT INTO run_steps_lean (run_id, n, action_id, outcome, at, detail)
    SELECT run_id, n, action_id, outcome, at, detail FROM run_steps;
DROP TABLE run_steps;
ALTER TABLE run_steps_lean RENAME TO run_steps;

CREATE TABLE run_effects_lean (
    run_id    TEXT NOT NULL,
    action_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (run_id, action_id)
) WITHOUT ROWID;
INSERT INTO run_effects_lean (run_id, action_id, kind, at)
    SELECT run_id, action_id, kind, at FROM run_effects;
DROP TABLE run_effects;
ALTER TABLE run_effects_lean RENAME TO run_effects;
