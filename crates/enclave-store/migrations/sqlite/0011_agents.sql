-- The agent registry and capability grants (spec/provisioning-billing.md).

-- Every agent id seen in an environment's statements. Nodes add to a row with an upsert in
-- the transaction that stores their query audit batch: no write per statement. `day` is the
-- UTC day (epoch milliseconds of its start) that credits_day_milli counts, for the grants'
-- max_credits_per_day.
CREATE TABLE agents (
    env_id             TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    agent_id           TEXT NOT NULL,
    framework          TEXT,
    first_seen_at      BIGINT NOT NULL,
    last_seen_at       BIGINT NOT NULL,
    query_count        BIGINT NOT NULL,
    credits_milli      BIGINT NOT NULL,
    day                BIGINT NOT NULL,
    credits_day_milli  BIGINT NOT NULL,
    PRIMARY KEY (env_id, agent_id)
);

-- One capability grant per agent and environment; `spec` is its content
-- (enclave_core::agent::CapabilitySpec). Granting again saves a new version.
CREATE TABLE agent_capabilities (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    env_id      TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    agent_id    TEXT NOT NULL,
    spec        JSONB NOT NULL,
    version     BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT agent_capabilities_unique UNIQUE (env_id, agent_id)
);

-- Every saved version of a grant, the current one included.
CREATE TABLE agent_capability_versions (
    grant_id    TEXT NOT NULL REFERENCES agent_capabilities(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    spec        JSONB NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (grant_id, version)
);
