-- Closing a case starts its retention period; the purge removes its
-- personal data once the period has passed.

ALTER TABLE cases ADD COLUMN closed_at BIGINT;
CREATE INDEX cases_closed ON cases (closed_at);
