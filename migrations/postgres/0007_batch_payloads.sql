-- Batch payloads move out of the batches row. Every claim and finish
-- updates that row, and SQLite rewrites a whole record on update, blob
-- and all: with a payload of several hundred kilobytes per full batch,
-- that was most of the bytes the database wrote.
CREATE TABLE batch_payloads (
    batch_id TEXT PRIMARY KEY REFERENCES batches (id),
    payload  BYTEA NOT NULL
);
INSERT INTO batch_payloads (batch_id, payload) SELECT id, payload FROM batches;
ALTER TABLE batches DROP COLUMN payload;
