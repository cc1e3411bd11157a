-- The control plane's state on SQLite. Times are Unix milliseconds (BIGINT);
-- an API's and a key's enforcer-facing state is stored as the encoded
-- `ipgate.sync.v1.ApiConfig` / `KeyConfig` (`config`), exactly as enforcers
-- receive it, because it is always replaced whole and never queried by part.

CREATE TABLE tenants (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', 0);

-- One row: the revision of the last committed change. Every write bumps it
-- first, which takes the write lock, so revisions commit in order.
CREATE TABLE meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT  NOT NULL
);
INSERT INTO meta (id, revision) VALUES (1, 0);

CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants (id),
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'editor', 'viewer', 'enforcer')),
    secret_sha256 BLOB    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE apis (
    slug       TEXT   PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id),
    name       TEXT   NOT NULL,
    config     BLOB   NOT NULL,
    revision   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX apis_tenant ON apis (tenant_id);

CREATE TABLE api_keys (
    id          TEXT   PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    api_slug    TEXT   NOT NULL REFERENCES apis (slug),
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    revoked     BIGINT NOT NULL DEFAULT 0,
    config      BLOB   NOT NULL,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX api_keys_api ON api_keys (api_slug);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- The change log: one row per revision, the encoded `ipgate.sync.v1.Delta`.
CREATE TABLE changes (
    revision     BIGINT PRIMARY KEY,
    tenant_id    BIGINT REFERENCES tenants (id),
    committed_at BIGINT NOT NULL,
    delta        BLOB   NOT NULL
);

CREATE TABLE enforcers (
    id              TEXT   PRIMARY KEY,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    acked_revision  BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    nacked_revision BIGINT NOT NULL DEFAULT 0,
    nack_reason     TEXT   NOT NULL DEFAULT '',
    dropped_allowed BIGINT NOT NULL DEFAULT 0,
    dropped_blocked BIGINT NOT NULL DEFAULT 0
);

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

CREATE TABLE usage_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NULL when the request named an API this control plane does not know.
    tenant_id     BIGINT REFERENCES tenants (id),
    batch_id      TEXT   NOT NULL,
    enforcer_id   TEXT   NOT NULL,
    request_id    TEXT   NOT NULL,
    time_ms       BIGINT NOT NULL,
    api           TEXT   NOT NULL,
    api_key_id    TEXT   NOT NULL,
    method        TEXT   NOT NULL,
    path          TEXT   NOT NULL,
    status_code   BIGINT NOT NULL,
    client_ip     TEXT   NOT NULL,
    reason        TEXT   NOT NULL,
    matched_label TEXT   NOT NULL
);
CREATE INDEX usage_events_time ON usage_events (time_ms, id);
CREATE INDEX usage_events_api ON usage_events (api, time_ms, id);
CREATE INDEX usage_events_key ON usage_events (api_key_id, time_ms, id);
CREATE INDEX usage_events_status ON usage_events (status_code, time_ms, id);
