-- Billing (spec/provisioning-billing.md): an organization's own quotas over its tier's, the
-- usage ledger the gateway meters into, and the warnings sent once per period.

-- Only the quotas the organization's owner changed: {"max_users": 10, "monthly_credit_limit":
-- "unlimited"}; the rest are the tier's, as the server is configured.
ALTER TABLE organizations ADD COLUMN quota_overrides JSONB NOT NULL DEFAULT '{}';

-- Usage per organization, environment, statement kind and hour. Nodes add to a row with an
-- upsert in the transaction that stores their query audit batch, so several nodes on one
-- database never lose a credit. An environment's usage stays after it is deleted (it was
-- billed); the organization's goes with it.
CREATE TABLE usage_ledger (
    org_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    env_id          TEXT NOT NULL,
    -- Epoch milliseconds of the hour's start (UTC).
    hour            BIGINT NOT NULL,
    -- select, insert, update, delete, ddl, other.
    statement_kind  TEXT NOT NULL,
    -- Production statements count against the monthly credits; the others are only metered.
    counted         BOOLEAN NOT NULL,
    queries         BIGINT NOT NULL,
    -- Thousandths of a credit: sums stay exact.
    credits_milli   BIGINT NOT NULL,
    PRIMARY KEY (org_id, hour, env_id, statement_kind, counted)
);

-- A billing.warning goes out once per organization, period (2026-12) and threshold (80, 100):
-- whichever node inserts the row first sends it.
CREATE TABLE billing_warnings (
    org_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    period      TEXT NOT NULL,
    threshold   INTEGER NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, period, threshold)
);

-- What each environment's data takes on its engine, as a node last measured it (after writes
-- through the gateway): every node sums the same figures against storage_limit_gb.
CREATE TABLE environment_storage (
    env_id       TEXT PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
    org_id       TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bytes        BIGINT NOT NULL,
    measured_at  BIGINT NOT NULL
);
CREATE INDEX environment_storage_org ON environment_storage (org_id);
