-- Audited transactions no longer lock audit_head. Each one writes its
-- entries here, unchained, and commits them with its action; a chainer
-- (Store::chain_pending_audit, run by every gateway and before every read
-- of the trail) takes the head's lock, moves them into audit_log in id
-- order and links them. Before, every audited transaction, each submit
-- among them, queued for the head's row lock behind answer filings that
-- append hundreds of entries and hold it through their commit.
CREATE TABLE audit_pending (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    office      TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    case_id     TEXT,
    purpose     TEXT,
    legal_basis TEXT
);
