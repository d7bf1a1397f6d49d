-- Environments: the isolated workspaces of an organization, their old slugs, and the record
-- of promotions between them.

-- Kept on the organization row so that creates, deletes and reorders of one organization's
-- environments serialise on it (an UPDATE locks the row on PostgreSQL; SQLite has one
-- writer), and so that list totals and quota checks need no COUNT(*) over a large table.
ALTER TABLE organizations ADD COLUMN env_count BIGINT NOT NULL DEFAULT 0;
-- Changes whenever the order of the organization's environments does (create, delete,
-- reorder, a moved index): reorders name the version they saw.
ALTER TABLE organizations ADD COLUMN env_order_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE environments (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    slug          TEXT NOT NULL,
    env_type      TEXT NOT NULL,
    -- The API's `index`: dense 0..n-1 within the organization.
    position      BIGINT NOT NULL,
    color         TEXT NOT NULL,
    parent_env_id TEXT REFERENCES environments(id),
    description   TEXT NOT NULL,
    status        TEXT NOT NULL,
    locked        BOOLEAN NOT NULL,
    settings      JSONB NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    version       BIGINT NOT NULL
);
-- Slugs are unique per organization regardless of case, enforced here (two racing creates
-- cannot both win).
CREATE UNIQUE INDEX environments_slug ON environments (org_id, lower(slug));
CREATE INDEX environments_order ON environments (org_id, position, id);
CREATE INDEX environments_children ON environments (parent_env_id);
CREATE INDEX environments_by_status ON environments (status);

-- A renamed environment's old slugs keep resolving for reads until another environment
-- takes them.
CREATE TABLE environment_slug_aliases (
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    slug       TEXT NOT NULL,
    env_id     TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, slug)
);
CREATE INDEX environment_slug_aliases_by_env ON environment_slug_aliases (env_id);

-- Promotions that ran (dry runs change nothing and are not recorded). Environment ids are
-- labels here, not foreign keys: the history outlives either side.
CREATE TABLE promotions (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    source_env_id TEXT NOT NULL,
    target_env_id TEXT NOT NULL,
    record        JSONB NOT NULL,
    promoted_at   BIGINT NOT NULL
);
CREATE INDEX promotions_by_source ON promotions (source_env_id, id);
CREATE INDEX promotions_by_target ON promotions (target_env_id, id);
