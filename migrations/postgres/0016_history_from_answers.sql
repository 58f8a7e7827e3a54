-- An inquiry's history no longer stores its answer steps: every accepted
-- answer is a row of `answers` (one per revision, 0012), received_at and
-- outcome included, and the history row repeated it (one insert and two
-- index entries per answer). Readers put the answers last
-- (Store::inquiries_where): an answer state moves only to another answer
-- state, so nothing stored ever follows the first answer.
DELETE FROM inquiry_events WHERE to_state IN ('answered', 'not_found', 'refused');
