-- Issue 3: tenants with a public id and a display name; token ids and
-- revocation; per-entry metadata kept from enforcers; columns derived from
-- `config` for list filters and the expiry sweep; the audit log; client
-- addresses as sortable 16-byte keys; enforcers known per tenant.
--
-- Derived columns of rows made by the first release are filled in by the
-- control plane at start (`derived = 0`), and usage events' address keys by
-- a background task: both need to decode what SQL cannot.

-- `tenants.name` is the tenant's public id ("default"); its display name is new.
ALTER TABLE tenants ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
UPDATE tenants SET display_name = 'Default' WHERE id = 1;

ALTER TABLE tokens ADD COLUMN public_id TEXT;
ALTER TABLE tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN revoked_at BIGINT;
UPDATE tokens SET public_id = 'tok_' || lower(hex(randomblob(8)));
CREATE UNIQUE INDEX tokens_public_id ON tokens (public_id);
CREATE INDEX tokens_tenant ON tokens (tenant_id, id);

-- `entry_meta`: JSON {cidr: {"at": ms, "by": token id}}, when and by whom
-- each entry was added; admin-only, never sent to enforcers.
ALTER TABLE apis ADD COLUMN entry_meta TEXT NOT NULL DEFAULT '{}';
ALTER TABLE apis ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1;
ALTER TABLE apis ADD COLUMN next_entry_expiry BIGINT;
ALTER TABLE apis ADD COLUMN derived BIGINT NOT NULL DEFAULT 0;
CREATE INDEX apis_tenant_slug ON apis (tenant_id, slug);
CREATE INDEX apis_next_entry_expiry ON apis (next_entry_expiry);

-- Rebuilt without the reference to `apis`: a deleted API's keys stay,
-- revoked, for the record (SQLite cannot drop a constraint in place).
CREATE TABLE api_keys_new (
    id                TEXT   PRIMARY KEY,
    tenant_id         BIGINT NOT NULL REFERENCES tenants (id),
    api_slug          TEXT   NOT NULL,
    name              TEXT   NOT NULL,
    description       TEXT   NOT NULL,
    revoked           BIGINT NOT NULL DEFAULT 0,
    config            BLOB   NOT NULL,
    revision          BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    entry_meta        TEXT   NOT NULL DEFAULT '{}',
    revoked_at        BIGINT,
    expires_at        BIGINT,
    allowlist_entries BIGINT NOT NULL DEFAULT 0,
    next_entry_expiry BIGINT,
    derived           BIGINT NOT NULL DEFAULT 0
);
INSERT INTO api_keys_new (id, tenant_id, api_slug, name, description, revoked, config,
                          revision, created_at, updated_at)
    SELECT id, tenant_id, api_slug, name, description, revoked, config, revision,
           created_at, updated_at
    FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;
CREATE INDEX api_keys_api ON api_keys (api_slug);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at, id);
CREATE INDEX api_keys_next_entry_expiry ON api_keys (next_entry_expiry);

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

-- The client address as 16 bytes (IPv4 as IPv4-mapped IPv6), so an address
-- or a CIDR range is an index range scan.
ALTER TABLE usage_events ADD COLUMN client_ip_key BLOB;
CREATE INDEX usage_events_client_ip ON usage_events (client_ip_key, time_ms, id);

-- Enforcer ids are chosen by each tenant's operators: they are unique per tenant.
CREATE TABLE enforcers_per_tenant (
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
INSERT INTO enforcers_per_tenant
    SELECT id, tenant_id, acked_revision, last_seen, nacked_revision, nack_reason,
           dropped_allowed, dropped_blocked
    FROM enforcers;
DROP TABLE enforcers;
ALTER TABLE enforcers_per_tenant RENAME TO enforcers;
