-- A counter per table whose contents the engine keeps compiled in memory
-- (the flow index, the date flows, the segment index). Triggers bump it on
-- every change, by any path, so "did anything change?" is a one-row read;
-- it used to be an aggregate over the whole table, run per writer batch.
CREATE TABLE generations (
    name TEXT PRIMARY KEY,
    n    BIGINT NOT NULL
);
INSERT INTO generations (name, n) VALUES ('flows', 0), ('segments', 0);

CREATE TRIGGER flows_generation_insert AFTER INSERT ON flows
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'flows'; END;
CREATE TRIGGER flows_generation_update AFTER UPDATE ON flows
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'flows'; END;
CREATE TRIGGER flows_generation_delete AFTER DELETE ON flows
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'flows'; END;

-- Build bookkeeping (build_after, built_version, swept) does not change
-- what the index holds, so it does not bump the counter.
CREATE TRIGGER segments_generation_insert AFTER INSERT ON segments
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'segments'; END;
CREATE TRIGGER segments_generation_update
AFTER UPDATE OF account_id, name, definition, is_active, version, updated ON segments
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'segments'; END;
CREATE TRIGGER segments_generation_delete AFTER DELETE ON segments
BEGIN UPDATE generations SET n = n + 1 WHERE name = 'segments'; END;
