-- Rows written once per inquiry carry no foreign keys (as on PostgreSQL).
-- Each key was an index lookup in the parent per row, under the one write
-- lock: a request of 100 inquiries made 300 of them. Each parent is still
-- checked by the transaction that writes the row (ARCHITECTURE.md,
-- invariants). SQLite cannot drop a key, so each table is rebuilt,
-- children first, so that no dropped table is still referenced. An
-- AUTOINCREMENT table keeps its sequence: an id is never given out twice,
-- even that of a purged row.
CREATE TABLE answer_transactions_new (
    account_id  BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    date        TEXT NOT NULL,
    description TEXT,
    debit       BIGINT,
    credit      BIGINT,
    balance     BIGINT NOT NULL,
    PRIMARY KEY (account_id, position)
);
INSERT INTO answer_transactions_new SELECT * FROM answer_transactions;
DROP TABLE answer_transactions;
ALTER TABLE answer_transactions_new RENAME TO answer_transactions;

CREATE TABLE answer_other_holdings_new (
    answer_id   BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (answer_id, position)
);
INSERT INTO answer_other_holdings_new SELECT * FROM answer_other_holdings;
DROP TABLE answer_other_holdings;
ALTER TABLE answer_other_holdings_new RENAME TO answer_other_holdings;

CREATE TABLE answer_accounts_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    answer_id    BIGINT NOT NULL,
    position     BIGINT NOT NULL,
    branch_code  TEXT NOT NULL,
    account_type TEXT NOT NULL,
    number       TEXT NOT NULL,
    holder_kana  TEXT NOT NULL,
    balance      BIGINT,
    as_of        TEXT,
    last_tx_date TEXT
);
INSERT INTO answer_accounts_new SELECT * FROM answer_accounts;
DELETE FROM sqlite_sequence WHERE name = 'answer_accounts_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'answer_accounts_new', seq FROM sqlite_sequence WHERE name = 'answer_accounts';
DROP TABLE answer_accounts;
ALTER TABLE answer_accounts_new RENAME TO answer_accounts;
CREATE INDEX answer_accounts_answer ON answer_accounts (answer_id);

CREATE TABLE answers_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    inquiry_id       TEXT NOT NULL,
    revision         BIGINT NOT NULL,
    institution_code TEXT NOT NULL,
    response_id      TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    refusal_code     TEXT,
    refusal_reason   TEXT,
    content_hash     TEXT NOT NULL,
    received_at      BIGINT NOT NULL,
    case_id          TEXT NOT NULL DEFAULT '',
    UNIQUE (inquiry_id, revision)
);
INSERT INTO answers_new SELECT * FROM answers;
DELETE FROM sqlite_sequence WHERE name = 'answers_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'answers_new', seq FROM sqlite_sequence WHERE name = 'answers';
DROP TABLE answers;
ALTER TABLE answers_new RENAME TO answers;
CREATE INDEX answers_case ON answers (case_id);

CREATE TABLE inquiries_new (
    id               TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL,
    case_id          TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    institution_code TEXT NOT NULL,
    branches         TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL,
    batch_id         TEXT,
    due_date         TEXT NOT NULL,
    failure_reason   TEXT,
    answer_revision  BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
INSERT INTO inquiries_new SELECT * FROM inquiries;
DROP TABLE inquiries;
ALTER TABLE inquiries_new RENAME TO inquiries;
CREATE INDEX inquiries_request ON inquiries (request_id);
CREATE INDEX inquiries_case ON inquiries (case_id);
