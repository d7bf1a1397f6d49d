-- Scale-out: the nodes serving this store, each with its last heartbeat, and the node whose
-- data directory holds an embedded environment's database file (its home node). A node that
-- stops cleanly writes stopped_at; one that dies is known by a stale heartbeat.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    api_url       TEXT NOT NULL,
    gateway_addr  TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    stopped_at    BIGINT
);

ALTER TABLE environments ADD COLUMN home_node TEXT;
