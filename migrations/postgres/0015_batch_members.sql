-- A batch's inquiries are listed in batch_inquiries, written once at the
-- seal, instead of being found through an index on inquiries.batch_id.
-- With batch_id in an index, the seal's update of each inquiry could never
-- be HOT: it wrote a new version of the row elsewhere and an entry into
-- each of the table's four indexes. The seal's statement was a quarter of
-- the server's CPU in the bench. inquiries.batch_id stays, unindexed: a
-- batch is set once and never changes, and readers of one inquiry join it.
--
-- The history's "batched" step, from the queue into the batch, is no
-- longer a row of its own either: it is the batch's created_at (readers
-- put it second, after the submit). A failed inquiry sent again by an
-- admin keeps its row: it has from_state 'failed'.
CREATE TABLE batch_inquiries (
    batch_id   TEXT COLLATE "C" NOT NULL,
    inquiry_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (batch_id, inquiry_id)
);
INSERT INTO batch_inquiries (batch_id, inquiry_id)
    SELECT batch_id, id FROM inquiries WHERE batch_id IS NOT NULL;
DROP INDEX inquiries_batch;
DELETE FROM inquiry_events WHERE from_state = 'queued' AND to_state = 'batched';
-- Room on each page for a second version of every row: the seal, the
-- delivery and the answer each update an inquiry, and with no index on
-- the columns they change, each update can now stay on its page (HOT) if
-- there is room. Under 80 the seal's new versions overflowed the page.
ALTER TABLE inquiries SET (fillfactor = 50);
