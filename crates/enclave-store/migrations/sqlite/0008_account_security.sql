-- Account security: a TOTP second factor per user with one-time recovery codes, password
-- resets an owner or admin starts, and sessions that remember whether the second factor was
-- given (an organization may require it).

-- TOTP secrets are sealed with the master key (`sealed:v1:…`), never stored in clear.
ALTER TABLE users ADD COLUMN mfa_secret TEXT;
-- An enrolment begun but not yet confirmed with a first code.
ALTER TABLE users ADD COLUMN mfa_pending_secret TEXT;
ALTER TABLE users ADD COLUMN mfa_enabled_at BIGINT;
-- The last 30-second step a code was accepted for: a code is good once.
ALTER TABLE users ADD COLUMN mfa_last_step BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN password_changed_at BIGINT;

ALTER TABLE sessions ADD COLUMN mfa_at BIGINT;

-- Only the SHA-256 of each recovery code is kept.
CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Only the SHA-256 of each reset token is kept; a token is good once, for a short while.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX password_resets_by_user ON password_resets (user_id);
