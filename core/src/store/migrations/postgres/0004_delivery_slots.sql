-- Delivery v2. Each durable transport (the broker, a Pusher mirror, a
-- plugin transport) has a slot in this registry; an outbox row keeps the
-- bits of the transports that have not taken it (`pending`) and of those
-- that refused it for good (`refused_by`). A row no registered transport
-- owes, and none refused, is deleted. Rows from before this migration are
-- owed to every transport (-1: every bit).
CREATE TABLE outbox_transports (
    slot SMALLINT PRIMARY KEY CHECK (slot BETWEEN 0 AND 62),
    key  TEXT     NOT NULL UNIQUE
);
ALTER TABLE outbox ADD COLUMN pending BIGINT NOT NULL DEFAULT -1;
ALTER TABLE outbox ADD COLUMN refused_by BIGINT NOT NULL DEFAULT 0;
-- When the row was written (ms since the epoch): a periodic recovery pass
-- takes only rows older than the lease, which a live engine delivers itself.
ALTER TABLE outbox ADD COLUMN queued_at BIGINT NOT NULL DEFAULT 0;
UPDATE outbox SET pending = 0, refused_by = -1 WHERE refused;
ALTER TABLE outbox DROP COLUMN refused;
