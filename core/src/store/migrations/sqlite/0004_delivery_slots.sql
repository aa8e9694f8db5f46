-- Delivery v2. Each durable transport (the broker, a Pusher mirror, a
-- plugin transport) has a slot in this registry; an outbox row keeps the
-- bits of the transports that have not taken it (`pending`) and of those
-- that refused it for good (`refused_by`). A row no registered transport
-- owes, and none refused, is deleted. Rows from before this migration are
-- owed to every transport (-1: every bit).
CREATE TABLE outbox_transports (
    slot INTEGER PRIMARY KEY CHECK (slot BETWEEN 0 AND 62),
    key  TEXT    NOT NULL UNIQUE
);
-- Rebuilt with AUTOINCREMENT: an id is never given out twice (SQLite would
-- reuse the highest deleted one), so a lane that recovered rows up to an id
-- knows every later row is new.
CREATE TABLE outbox_v2 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation INTEGER NOT NULL,
    event        TEXT    NOT NULL,
    message      INTEGER,
    payload      TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    lease_owner  TEXT,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    pending      INTEGER NOT NULL DEFAULT -1,
    refused_by   INTEGER NOT NULL DEFAULT 0,
    -- When the row was written (ms since the epoch): a periodic recovery
    -- pass takes only rows older than the lease, which a live engine
    -- delivers itself.
    queued_at    INTEGER NOT NULL DEFAULT 0
);
INSERT INTO outbox_v2 (id, conversation, event, message, payload, attempts, last_error,
                       lease_owner, lease_until, pending, refused_by)
SELECT id, conversation, event, message, payload, attempts, last_error, lease_owner, lease_until,
       CASE WHEN refused <> 0 THEN 0 ELSE -1 END, CASE WHEN refused <> 0 THEN -1 ELSE 0 END
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;
