-- Just-in-time access (spec/provisioning-billing.md): a member's request for a higher role in
-- one environment, its decision, and — once approved — the grant it became, until
-- expires_at. Requests go with their environment.
CREATE TABLE jit_requests (
    id                TEXT PRIMARY KEY,
    env_id            TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    org_id            TEXT NOT NULL,
    requester_id      TEXT NOT NULL,
    member_role       TEXT NOT NULL,
    requested_role    TEXT NOT NULL,
    reason            TEXT NOT NULL,
    duration_minutes  BIGINT NOT NULL,
    status            TEXT NOT NULL,
    decided_by        TEXT,
    decided_at        BIGINT,
    decision_comment  TEXT,
    expires_at        BIGINT,
    ended_by          TEXT,
    ended_at          BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    version           BIGINT NOT NULL
);
CREATE INDEX jit_requests_by_env ON jit_requests (env_id, id);
CREATE INDEX jit_requests_by_requester ON jit_requests (env_id, requester_id, status);
CREATE INDEX jit_requests_open ON jit_requests (status, expires_at);

-- An IAM audit entry made with a grant's role names the grant.
ALTER TABLE iam_audit ADD COLUMN via_grant TEXT;
