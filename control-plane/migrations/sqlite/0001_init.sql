-- The control plane's state on SQLite. Times are Unix milliseconds (BIGINT);
-- an API's and a key's enforcer-facing state is stored as the encoded
-- `ipgate.sync.v1.ApiConfig` / `KeyConfig` (`config`), exactly as enforcers
-- receive it, because it is always replaced whole. The few of its values
-- that queries filter on (enabled, expiry, entry count, next entry expiry)
-- are stored beside it, written with it by the store.

-- `name` is the tenant's public id ("default"); `display_name` is for people.
CREATE TABLE tenants (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    display_name TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);
INSERT INTO tenants (id, name, display_name, created_at)
    VALUES (1, 'default', 'Default', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

-- One row: the revision of the last committed change. Every write bumps it
-- first, which takes the write lock, so revisions commit in order.
CREATE TABLE meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT  NOT NULL
);
INSERT INTO meta (id, revision) VALUES (1, 0);

-- Admin and enforcer tokens: SHA-256 only, known by a public id (`tok_…`).
CREATE TABLE tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id     TEXT    NOT NULL UNIQUE,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants (id),
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'editor', 'viewer', 'enforcer')),
    secret_sha256 BLOB    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    -- Public id of the token that made it; '' for bootstrap tokens.
    created_by    TEXT    NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX tokens_tenant ON tokens (tenant_id, id);

-- `entry_meta`: JSON {cidr: {"at": ms, "by": token id}}, when and by whom
-- each entry was added; admin-only, never sent to enforcers.
CREATE TABLE apis (
    slug              TEXT   PRIMARY KEY,
    tenant_id         BIGINT NOT NULL REFERENCES tenants (id),
    name              TEXT   NOT NULL,
    config            BLOB   NOT NULL,
    entry_meta        TEXT   NOT NULL,
    enabled           BIGINT NOT NULL,
    next_entry_expiry BIGINT,
    revision          BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX apis_tenant_slug ON apis (tenant_id, slug);
CREATE INDEX apis_next_entry_expiry ON apis (next_entry_expiry);

-- No reference to `apis`: a deleted API's keys stay, revoked, for the record.
CREATE TABLE api_keys (
    id                TEXT   PRIMARY KEY,
    tenant_id         BIGINT NOT NULL REFERENCES tenants (id),
    api_slug          TEXT   NOT NULL,
    name              TEXT   NOT NULL,
    description       TEXT   NOT NULL,
    revoked_at        BIGINT,
    config            BLOB   NOT NULL,
    entry_meta        TEXT   NOT NULL,
    expires_at        BIGINT,
    allowlist_entries BIGINT NOT NULL,
    next_entry_expiry BIGINT,
    revision          BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX api_keys_api ON api_keys (api_slug);
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at, id);
CREATE INDEX api_keys_next_entry_expiry ON api_keys (next_entry_expiry);

-- The change log: one row per revision, the encoded `ipgate.sync.v1.Delta`
-- of the tenant whose objects changed.
CREATE TABLE changes (
    revision     BIGINT PRIMARY KEY,
    tenant_id    BIGINT NOT NULL REFERENCES tenants (id),
    committed_at BIGINT NOT NULL,
    delta        BLOB   NOT NULL
);

-- Enforcer ids are chosen by each tenant's operators: unique per tenant.
CREATE TABLE enforcers (
    id              TEXT   NOT NULL,
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    acked_revision  BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    nacked_revision BIGINT NOT NULL DEFAULT 0,
    nack_reason     TEXT   NOT NULL DEFAULT '',
    dropped_allowed BIGINT NOT NULL DEFAULT 0,
    dropped_blocked BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);

-- Every admin write, in the transaction of the write itself.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    time_ms     BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    object_type TEXT   NOT NULL,
    object_id   TEXT   NOT NULL,
    before_json TEXT   NOT NULL,
    after_json  TEXT   NOT NULL,
    revision    BIGINT NOT NULL
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id);
CREATE INDEX audit_events_object ON audit_events (tenant_id, object_type, object_id, id);
CREATE INDEX audit_events_actor ON audit_events (tenant_id, actor, id);

-- The usage log (usage_batches, usage_events, usage_gaps) lives in a
-- database file of its own, beside this one: see migrations/sqlite-usage.
