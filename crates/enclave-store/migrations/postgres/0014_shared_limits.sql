-- Limits that hold across nodes (docs/deployment.md): each identity's rate-limit token bucket,
-- from which nodes take small slices of requests, and each node's lease of an environment's
-- concurrent statements. Used when more than one node serves a PostgreSQL store.
CREATE TABLE rate_buckets (
    key          TEXT PRIMARY KEY,
    tokens       DOUBLE PRECISION NOT NULL,
    refilled_at  BIGINT NOT NULL
);

CREATE TABLE admission_leases (
    env_id      TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    slots       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (env_id, node_id)
);
