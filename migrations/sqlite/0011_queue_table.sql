-- The delivery queue becomes a table of its own: an inquiry is in
-- inquiry_queue from its submit until it is sealed into a batch or
-- cancelled. The batcher found queued inquiries through an index on
-- inquiries (state, …), which every later change of state rewrote; now
-- `state` is in no index (on PostgreSQL that makes those updates HOT).
CREATE TABLE inquiry_queue (
    inquiry_id       TEXT PRIMARY KEY,
    institution_code TEXT NOT NULL,
    created_at       BIGINT NOT NULL
) WITHOUT ROWID;
CREATE INDEX inquiry_queue_order ON inquiry_queue (institution_code, created_at, inquiry_id);
INSERT INTO inquiry_queue (inquiry_id, institution_code, created_at)
    SELECT id, institution_code, created_at FROM inquiries WHERE state = 'queued';
DROP INDEX inquiries_queue;
