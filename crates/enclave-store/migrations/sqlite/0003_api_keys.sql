-- Environment API keys. Only an Argon2id hash of each key's secret is stored.
CREATE TABLE api_keys (
    id                   TEXT PRIMARY KEY,
    env_id               TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    org_id               TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    prefix               TEXT NOT NULL,
    secret_hash          TEXT NOT NULL,
    role                 TEXT NOT NULL,
    attributes           JSONB NOT NULL,
    scopes               JSONB NOT NULL,
    ip_allowlist         JSONB NOT NULL,
    status               TEXT NOT NULL,
    last_used_at         BIGINT,
    expires_at           BIGINT,
    grace_expires_at     BIGINT,
    rotated_to           TEXT,
    -- When `key.expiring` was noticed for this key (once per key).
    expiring_noticed_at  BIGINT,
    created_at           BIGINT NOT NULL,
    created_by           TEXT NOT NULL,
    updated_at           BIGINT NOT NULL,
    version              BIGINT NOT NULL
);
CREATE INDEX api_keys_by_env ON api_keys (env_id, id);
CREATE INDEX api_keys_by_status ON api_keys (status, expires_at);
