-- Which database this is (a UUID the control plane fills in at first start;
-- a restored backup keeps it). Enforcers holding state from another
-- database, or from this one at a revision it never reached, are sent a
-- fresh snapshot (docs/sync-protocol.md).
ALTER TABLE meta ADD COLUMN database_id TEXT NOT NULL DEFAULT '';

-- A token revocation commits a revision of its own, flagged here, so that
-- every replica's sync sessions check their token again before they send
-- anything committed after it.
ALTER TABLE changes ADD COLUMN revokes_token BIGINT NOT NULL DEFAULT 0;

-- What ListEnforcers and GetPropagation show, written by whichever replica
-- the enforcer is connected to. `replica` is '' while it is connected
-- nowhere; `last_seen` is its last message (a heartbeat at least every 5 s).
ALTER TABLE enforcers ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcers ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcers ADD COLUMN version TEXT NOT NULL DEFAULT '';
ALTER TABLE enforcers ADD COLUMN connected_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enforcers ADD COLUMN events_buffered BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enforcers ADD COLUMN events_dropped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enforcers ADD COLUMN nacked_at BIGINT NOT NULL DEFAULT 0;
