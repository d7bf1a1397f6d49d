-- Access policies of an environment (standard: column masking, row-level security; and
-- ABAC), one namespace of names per environment. `spec` is the policy's content
-- (enclave_core::policy::PolicySpec); `name` and `policy_type` repeat parts of it for the
-- unique constraint and the lists.
CREATE TABLE policies (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    env_id       TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    policy_type  TEXT NOT NULL,
    spec         JSONB NOT NULL,
    version      BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    CONSTRAINT policies_name_unique UNIQUE (env_id, name)
);
CREATE INDEX policies_by_env ON policies (env_id, kind, id);

-- Every saved version of a policy, the current one included; restoring one saves its
-- content as a new version.
CREATE TABLE policy_versions (
    policy_id   TEXT NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    spec        JSONB NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (policy_id, version)
);
