-- A counter per table whose contents the engine keeps compiled in memory
-- (the flow index, the date flows, the segment index). Triggers bump it on
-- every change, by any path, so "did anything change?" is a one-row read;
-- it used to be an aggregate over the whole table, run per dispatch pass.
-- Writers of flows (or of segments) queue on the counter's row until they
-- commit; both are edited at API rates.
CREATE TABLE generations (
    name TEXT PRIMARY KEY,
    n    BIGINT NOT NULL
);
INSERT INTO generations (name, n) VALUES ('flows', 0), ('segments', 0);

CREATE FUNCTION outflow_bump_generation() RETURNS trigger AS $$
BEGIN
    UPDATE generations SET n = n + 1 WHERE name = TG_ARGV[0];
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER flows_generation AFTER INSERT OR UPDATE OR DELETE ON flows
    FOR EACH STATEMENT EXECUTE FUNCTION outflow_bump_generation('flows');
-- Build bookkeeping (build_after, built_version, swept) does not change
-- what the index holds, so it does not bump the counter.
CREATE TRIGGER segments_generation
    AFTER INSERT OR DELETE OR UPDATE OF account_id, name, definition, is_active, version, updated
    ON segments
    FOR EACH STATEMENT EXECUTE FUNCTION outflow_bump_generation('segments');
