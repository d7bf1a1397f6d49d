-- The head of every audit hash chain (IAM: one per organization). An append upserts this row
-- first, which locks it: concurrent writers of one chain queue here and never fork it.
CREATE TABLE audit_chains (
    chain_id   TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    head_hash  TEXT NOT NULL
);

-- IAM audit entries. No foreign key to organizations: the trail outlives what it records.
-- before/after are stored as the exact JSON text that was hashed.
CREATE TABLE iam_audit (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    actor_type     TEXT NOT NULL,
    actor_id       TEXT NOT NULL,
    action         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    env_id         TEXT,
    before_json    TEXT NOT NULL,
    after_json     TEXT NOT NULL,
    request_id     TEXT,
    source_ip      TEXT,
    created_at     INTEGER NOT NULL,
    prev_hash      TEXT NOT NULL,
    entry_hash     TEXT NOT NULL,
    UNIQUE (org_id, seq)
);
CREATE INDEX iam_audit_by_actor ON iam_audit (org_id, actor_id, seq);
CREATE INDEX iam_audit_by_resource ON iam_audit (org_id, resource_id, seq);

CREATE TABLE webhooks (
    id                          TEXT PRIMARY KEY,
    org_id                      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    url                         TEXT NOT NULL,
    description                 TEXT NOT NULL,
    events                      JSONB NOT NULL,
    status                      TEXT NOT NULL,
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,
    previous_secret_expires_at  INTEGER,
    consecutive_failures        INTEGER NOT NULL DEFAULT 0,
    disabled_reason             TEXT,
    created_by                  TEXT NOT NULL,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    version                     INTEGER NOT NULL
);
CREATE INDEX webhooks_by_org ON webhooks (org_id, id);

-- One row per (webhook, event name or '*'): fan-out is a join, on both backends.
CREATE TABLE webhook_subscriptions (
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    PRIMARY KEY (webhook_id, event_type)
);
CREATE INDEX webhook_subscriptions_by_event ON webhook_subscriptions (event_type, webhook_id);

-- The outbox: one row per event and subscribed webhook, written in the transaction of the
-- change. `payload` is the exact body sent. A worker claims due rows by setting
-- `lease_until`; an expired lease (a node died mid-send) makes the row due again.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    org_id           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);

CREATE TABLE webhook_attempts (
    id           TEXT PRIMARY KEY,
    delivery_id  TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    webhook_id   TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    status_code  INTEGER,
    latency_ms   INTEGER NOT NULL,
    error        TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempt);
