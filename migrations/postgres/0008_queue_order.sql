-- The batcher takes the oldest queued inquiries of one institution in
-- (created_at, id) order. With id in the index the order comes from the
-- index and the scan stops at the batch size; without it every queued
-- inquiry sharing a millisecond went through a sort first.
DROP INDEX inquiries_queue;
CREATE INDEX inquiries_queue ON inquiries (state, institution_code, created_at, id);
