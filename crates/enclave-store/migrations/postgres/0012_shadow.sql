-- Shadow environments (spec/provisioning-billing.md): one environment's sampled reads replayed
-- against another's. The configuration, the running counts of the last start (kept after a
-- stop, until the next start) and the latest mismatches with both outcomes, never the rows.
CREATE TABLE shadow_configs (
    env_id           TEXT PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
    org_id           TEXT NOT NULL,
    target_env_id    TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    spec             JSONB NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX shadow_configs_by_target ON shadow_configs (target_env_id);

CREATE TABLE shadow_stats (
    env_id            TEXT PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
    target_env_id     TEXT,
    since             BIGINT NOT NULL,
    matches           BIGINT NOT NULL,
    mismatches        BIGINT NOT NULL,
    errors            BIGINT NOT NULL,
    dropped           BIGINT NOT NULL,
    primary_ms_total  BIGINT NOT NULL,
    shadow_ms_total   BIGINT NOT NULL
);

CREATE TABLE shadow_mismatches (
    id            TEXT PRIMARY KEY,
    env_id        TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    entry         JSONB NOT NULL
);
CREATE INDEX shadow_mismatches_by_env ON shadow_mismatches (env_id, id);
