-- A batch's inquiries are listed in batch_inquiries, written once at the
-- seal, instead of being found through an index on inquiries.batch_id.
-- (On PostgreSQL the index kept the seal's update of each inquiry from
-- being HOT; here it is the same schema, so that both stores run the same
-- statements.) inquiries.batch_id stays, unindexed: a
-- batch is set once and never changes, and readers of one inquiry join it.
--
-- The history's "batched" step, from the queue into the batch, is no
-- longer a row of its own either: it is the batch's created_at (readers
-- put it second, after the submit). A failed inquiry sent again by an
-- admin keeps its row: it has from_state 'failed'.
CREATE TABLE batch_inquiries (
    batch_id   TEXT NOT NULL,
    inquiry_id TEXT NOT NULL,
    PRIMARY KEY (batch_id, inquiry_id)
) WITHOUT ROWID;
INSERT INTO batch_inquiries (batch_id, inquiry_id)
    SELECT batch_id, id FROM inquiries WHERE batch_id IS NOT NULL;
DROP INDEX inquiries_batch;
DELETE FROM inquiry_events WHERE from_state = 'queued' AND to_state = 'batched';
