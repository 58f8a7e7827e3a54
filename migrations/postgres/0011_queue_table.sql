-- The delivery queue becomes a table of its own. The batcher found queued
-- inquiries through an index on inquiries (state, …), so every change of
-- state rewrote an index entry, and on PostgreSQL no update of an inquiry
-- could be HOT: each one added an entry to all five of the table's indexes
-- (a third of the server's CPU in the bench's profile went to index
-- inserts). Now `state` is in no index: an inquiry is in inquiry_queue from
-- its submit until it is sealed into a batch or cancelled, and delivery and
-- answers update the row in place.
CREATE TABLE inquiry_queue (
    inquiry_id       TEXT COLLATE "C" PRIMARY KEY,
    institution_code TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX inquiry_queue_order ON inquiry_queue (institution_code, created_at, inquiry_id);
INSERT INTO inquiry_queue (inquiry_id, institution_code, created_at)
    SELECT id, institution_code, created_at FROM inquiries WHERE state = 'queued';
DROP INDEX inquiries_queue;
-- Room on each page for the new versions of its rows, so that an update
-- stays on its page (a HOT update needs that too).
ALTER TABLE inquiries SET (fillfactor = 80);
