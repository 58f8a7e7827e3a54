-- An inquiry's history no longer stores its first step: "queued at the
-- submit" is the inquiry's own created_at, and the row repeated it for
-- every inquiry (one insert and two index entries each). Readers put it
-- first (Store::inquiries_where). Later returns to the queue keep their
-- rows: they have a from_state.
DELETE FROM inquiry_events WHERE from_state IS NULL AND to_state = 'queued';
