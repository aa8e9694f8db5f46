-- Outbox leases: the engine (node) delivering a row holds it until
-- lease_until (ms since the epoch); another takes it over once that passed.
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
