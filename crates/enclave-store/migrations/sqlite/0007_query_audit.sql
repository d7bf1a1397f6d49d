-- The query audit (spec/audit-webhooks.md, spec/gateway.md stage 12): one entry per statement
-- the gateway handled, hash-chained per environment. The chain's head lives in audit_chains
-- under the environment's id. Entries go with their environment.
CREATE TABLE query_audit (
    query_id        TEXT PRIMARY KEY,
    env_id          TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    principal_id    TEXT NOT NULL,
    statement_kind  TEXT,
    outcome         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    entry_json      TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    entry_hash      TEXT NOT NULL,
    UNIQUE (env_id, seq)
);
CREATE INDEX query_audit_by_principal ON query_audit (env_id, principal_id, seq);
