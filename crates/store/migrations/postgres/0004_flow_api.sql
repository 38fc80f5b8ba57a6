-- What the flows API needs beyond 0002: Klaviyo's flow-action ids are
-- numeric strings unique in the account, and GET /api/flow-actions/{id}
-- must find the flow an action belongs to.

-- One counter hands out action ids; a row lock serialises allocations, so
-- two processes sharing PostgreSQL never hand out the same id.
CREATE TABLE flow_action_ids (
    singleton BIGINT PRIMARY KEY,
    next_id   BIGINT NOT NULL
);
INSERT INTO flow_action_ids (singleton, next_id) VALUES (1, 100000);

-- The actions of each flow's current version. Rows of actions removed by a
-- later version are deleted; runs on older versions read their actions
-- from flow_versions, not from here.
CREATE TABLE flow_actions (
    id          BIGINT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    flow_id     TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    action_type TEXT NOT NULL,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL
);
CREATE INDEX flow_actions_flow ON flow_actions (flow_id, id);
