-- The usage log on SQLite: a database file of its own beside the control
-- plane's (`ipgate.db` -> `ipgate.usage.db`), so its write lock is its own:
-- an ingest never waits behind an allowlist write, nor one behind an
-- ingest (docs/architecture.md, "The usage log"). Nothing here refers to
-- the other file: tenant ids are those of the reporting enforcer's token.

-- Batches already stored, so a retried batch is stored at most once.
CREATE TABLE usage_batches (
    id              TEXT   PRIMARY KEY,
    enforcer_id     TEXT   NOT NULL,
    received_at     BIGINT NOT NULL,
    events          BIGINT NOT NULL,
    dropped_allowed BIGINT NOT NULL,
    dropped_blocked BIGINT NOT NULL
);
CREATE INDEX usage_batches_received ON usage_batches (received_at);

-- Every decided request, under the reporting enforcer's tenant.
-- `client_ip_key` is the address as 16 bytes (IPv4 as IPv4-mapped IPv6), so
-- an address or a CIDR range is a range of it. It has no index of its own:
-- an ingest adds rows at the end of every index here (time, or a few APIs,
-- or keys, each in time order), where an index by address would
-- put each row of a batch on a page of its own, and that random write was
-- most of an ingest's cost (BENCHMARKS.md). A filter by address reads the
-- rows of its time range instead. `door` is the enforcer's door the request
-- came through (`proxy`, `ext_authz`, `auth_request`, `check`), or
-- `unknown` when the enforcer did not say; like `reason` it has no CHECK,
-- so a door added later needs no rebuild of this table.
-- `client_ip_source` is where the door found `client_ip` (`peer`,
-- `x-forwarded-for`, `forwarded`, `client-ip-header`, `named`, or a
-- fallback: `unknown-hop`, `malformed`, `conflicting`, `too-many-hops`,
-- `too-few-hops`), or `unknown` when the enforcer did not say; no CHECK
-- either, for the same reason. Status has no index: a log holds a few
-- statuses, so one would select little and cost every row a fourth index
-- insert; a filter by status reads its time range. AUTOINCREMENT: no id is ever used twice,
-- even once retention has deleted every row, so a cursor stays valid.
CREATE TABLE usage_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     BIGINT NOT NULL,
    enforcer_id   TEXT   NOT NULL,
    request_id    TEXT   NOT NULL,
    time_ms       BIGINT NOT NULL,
    api           TEXT   NOT NULL,
    api_key_id    TEXT   NOT NULL,
    method        TEXT   NOT NULL,
    path          TEXT   NOT NULL,
    status_code   BIGINT NOT NULL,
    client_ip     TEXT   NOT NULL,
    client_ip_key BLOB   NOT NULL,
    reason        TEXT   NOT NULL,
    matched_label TEXT   NOT NULL,
    door          TEXT   NOT NULL,
    client_ip_source TEXT NOT NULL
);
CREATE INDEX usage_events_time ON usage_events (time_ms, id);
CREATE INDEX usage_events_api ON usage_events (api, time_ms, id);
CREATE INDEX usage_events_key ON usage_events (api_key_id, time_ms, id);

-- Gaps in the usage log: requests an enforcer decided but whose events it
-- dropped because its queue was full (the control plane slow or away), one
-- row per batch that reported drops, under the enforcer's tenant.
-- `first_ms`..`last_ms` are the first and last dropped request's times; the
-- log sorts a gap by `first_ms`. `usage_batches` keeps the same counts per
-- batch id; this table is what the usage log reads.
CREATE TABLE usage_gaps (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       BIGINT NOT NULL,
    batch_id        TEXT   NOT NULL,
    enforcer_id     TEXT   NOT NULL,
    first_ms        BIGINT NOT NULL,
    last_ms         BIGINT NOT NULL,
    dropped_allowed BIGINT NOT NULL,
    dropped_blocked BIGINT NOT NULL
);
CREATE INDEX usage_gaps_time ON usage_gaps (tenant_id, first_ms, id);
