-- Batch payloads are stored deflated from now on: the XML was half of what
-- the database wrote and kept. Payloads written before stay as they are.
ALTER TABLE batch_payloads ADD COLUMN encoding TEXT NOT NULL DEFAULT 'identity';
-- Out of line but not compressed again by TOAST: deflated bytes do not
-- shrink, and pglz would only spend the time finding that out.
ALTER TABLE batch_payloads ALTER COLUMN payload SET STORAGE EXTERNAL;
