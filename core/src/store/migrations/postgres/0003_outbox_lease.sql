-- Outbox leases: the node delivering a row holds it until lease_until (ms
-- since the epoch); another node takes it over once that passed. Claims run
-- under an advisory lock, so one conversation's rows go to one node at a time.
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
