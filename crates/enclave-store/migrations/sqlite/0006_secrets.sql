-- Secrets (spec/secrets.md), envelope-encrypted: the database holds ciphertext and wrapped
-- keys only.

-- The master key this database's data keys are wrapped with, by id (never the key): a
-- server started with another key refuses to start instead of failing on the first secret.
CREATE TABLE keyring (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    master_key_id  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    rotated_at     BIGINT
);

-- Each environment's data key (AES-256-GCM), wrapped by the master key. Deleting the
-- environment deletes it, and with it the only way to open the environment's values.
CREATE TABLE secret_keys (
    env_id         TEXT PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
    key_id         TEXT NOT NULL UNIQUE,
    wrapped        BLOB NOT NULL,
    master_key_id  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- The current version of each secret. Keys are case-sensitive and sort byte-wise on both
-- databases (keyset pagination by key).
CREATE TABLE secrets (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    env_id      TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    key_name    TEXT NOT NULL,
    ciphertext  BLOB NOT NULL,
    comment     TEXT NOT NULL,
    tags        JSONB NOT NULL,
    version     BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT secrets_key_unique UNIQUE (env_id, key_name)
);

-- Every saved version, the current one included (each sealed with its own version number
-- as associated data, so versions cannot be swapped).
CREATE TABLE secret_versions (
    secret_id   TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    ciphertext  BLOB NOT NULL,
    comment     TEXT NOT NULL,
    tags        JSONB NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (secret_id, version)
);

-- Keys the environment must hold (reported as missing on the environment and in diffs).
ALTER TABLE environments ADD COLUMN required_keys JSONB NOT NULL DEFAULT '[]';
