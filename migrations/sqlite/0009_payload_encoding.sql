-- Batch payloads are stored deflated from now on: the XML was half of what
-- the database wrote and kept. Payloads written before stay as they are.
ALTER TABLE batch_payloads ADD COLUMN encoding TEXT NOT NULL DEFAULT 'identity';
