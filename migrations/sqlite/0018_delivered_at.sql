-- An inquiry's delivery is no longer a history row: the move to delivered
-- at a batch's acknowledgement sets `delivered_at` in the same UPDATE
-- (one history insert and its index entries per inquiry less, a third of
-- that statement's time on PostgreSQL). An inquiry is delivered at most
-- once: it enters delivered only from batched, and only a dead batch,
-- never an acknowledged one, fails its inquiries and sends them again.
-- Readers put the step before the first stored step that leaves
-- delivered (Store::inquiries_where). The step's note, which no reader
-- used, stays in the batch's attempt row (pulled, mailed).
ALTER TABLE inquiries ADD COLUMN delivered_at BIGINT;
UPDATE inquiries SET delivered_at = (
    SELECT MIN(e.at) FROM inquiry_events e
    WHERE e.inquiry_id = inquiries.id AND e.to_state = 'delivered')
WHERE EXISTS (
    SELECT 1 FROM inquiry_events e
    WHERE e.inquiry_id = inquiries.id AND e.to_state = 'delivered');
DELETE FROM inquiry_events WHERE to_state = 'delivered';
