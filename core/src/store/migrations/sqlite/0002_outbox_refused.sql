-- Rows a transport refused for good (a 4xx other than 429): kept with their
-- reason for operators, never claimed again.
ALTER TABLE outbox ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
