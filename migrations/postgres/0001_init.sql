-- Shokai schema, PostgreSQL dialect. Instants are BIGINT milliseconds since the
-- epoch (UTC); dates are ISO text; money is integer yen.

CREATE TABLE institutions (
    code             TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    kana             TEXT NOT NULL,
    channel          TEXT NOT NULL DEFAULT 'paper',
    endpoint_url     TEXT,
    server_ca_pem    TEXT,
    max_batch_size   BIGINT NOT NULL DEFAULT 100,
    max_in_flight    BIGINT NOT NULL DEFAULT 2,
    batch_max_age_ms BIGINT NOT NULL DEFAULT 2000,
    paused           BIGINT NOT NULL DEFAULT 0,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE branches (
    institution_code TEXT NOT NULL,
    code             TEXT NOT NULL,
    name             TEXT NOT NULL,
    kana             TEXT NOT NULL,
    PRIMARY KEY (institution_code, code)
);

CREATE TABLE bank_client_certs (
    fingerprint      TEXT PRIMARY KEY,
    institution_code TEXT NOT NULL REFERENCES institutions (code),
    added_at         BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    label      TEXT NOT NULL,
    role       TEXT NOT NULL,
    office     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE cases (
    id            TEXT PRIMARY KEY,
    office        TEXT NOT NULL,
    case_number   TEXT NOT NULL,
    decision_date TEXT,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE subjects (
    id                TEXT PRIMARY KEY,
    case_id           TEXT NOT NULL REFERENCES cases (id),
    position          BIGINT NOT NULL,
    kana_name         TEXT NOT NULL,
    kanji_name        TEXT,
    birth_date        TEXT NOT NULL,
    postal_code       TEXT,
    address           TEXT,
    former_kana_names TEXT NOT NULL DEFAULT ''
);
CREATE INDEX subjects_case ON subjects (case_id);

CREATE TABLE requests (
    id              TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL REFERENCES cases (id),
    actor           TEXT NOT NULL,
    idempotency_key TEXT,
    body_hash       TEXT,
    kinds           TEXT NOT NULL,
    reference_date  TEXT NOT NULL,
    period_from     TEXT,
    period_to       TEXT,
    legal_basis     TEXT NOT NULL,
    purpose         TEXT,
    due_date        TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX requests_idempotency ON requests (actor, idempotency_key);

CREATE TABLE inquiries (
    id               TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL REFERENCES requests (id),
    case_id          TEXT NOT NULL,
    subject_id       TEXT NOT NULL REFERENCES subjects (id),
    institution_code TEXT NOT NULL REFERENCES institutions (code),
    branches         TEXT NOT NULL DEFAULT '',
    state            TEXT NOT NULL,
    batch_id         TEXT,
    due_date         TEXT NOT NULL,
    failure_reason   TEXT,
    answer_revision  BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX inquiries_queue ON inquiries (state, institution_code, created_at);
CREATE INDEX inquiries_request ON inquiries (request_id);
CREATE INDEX inquiries_batch ON inquiries (batch_id);
CREATE INDEX inquiries_case ON inquiries (case_id);

CREATE TABLE inquiry_events (
    id         BIGSERIAL PRIMARY KEY,
    inquiry_id TEXT NOT NULL,
    at         BIGINT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX inquiry_events_inquiry ON inquiry_events (inquiry_id);

CREATE TABLE batches (
    id               TEXT PRIMARY KEY,
    institution_code TEXT NOT NULL REFERENCES institutions (code),
    state            TEXT NOT NULL,
    inquiry_count    BIGINT NOT NULL,
    payload          BYTEA NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    first_attempt_at BIGINT,
    claim_token      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    acknowledged_at  BIGINT
);
CREATE INDEX batches_due ON batches (state, next_attempt_at);
CREATE INDEX batches_institution ON batches (institution_code, state);

CREATE TABLE delivery_attempts (
    id          BIGSERIAL PRIMARY KEY,
    batch_id    TEXT NOT NULL,
    attempt_no  BIGINT NOT NULL,
    claim_token TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    http_status BIGINT,
    error       TEXT
);
CREATE INDEX delivery_attempts_batch ON delivery_attempts (batch_id);

CREATE TABLE answers (
    id               BIGSERIAL PRIMARY KEY,
    inquiry_id       TEXT NOT NULL REFERENCES inquiries (id),
    revision         BIGINT NOT NULL,
    institution_code TEXT NOT NULL,
    response_id      TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    refusal_code     TEXT,
    refusal_reason   TEXT,
    content_hash     TEXT NOT NULL,
    received_at      BIGINT NOT NULL,
    UNIQUE (inquiry_id, revision)
);

CREATE TABLE answer_accounts (
    id           BIGSERIAL PRIMARY KEY,
    answer_id    BIGINT NOT NULL REFERENCES answers (id),
    position     BIGINT NOT NULL,
    branch_code  TEXT NOT NULL,
    account_type TEXT NOT NULL,
    number       TEXT NOT NULL,
    holder_kana  TEXT NOT NULL,
    balance      BIGINT,
    as_of        TEXT,
    last_tx_date TEXT
);
CREATE INDEX answer_accounts_answer ON answer_accounts (answer_id);

CREATE TABLE answer_transactions (
    account_id  BIGINT NOT NULL REFERENCES answer_accounts (id),
    position    BIGINT NOT NULL,
    date        TEXT NOT NULL,
    description TEXT,
    debit       BIGINT,
    credit      BIGINT,
    balance     BIGINT NOT NULL,
    PRIMARY KEY (account_id, position)
);

CREATE TABLE answer_other_holdings (
    answer_id   BIGINT NOT NULL REFERENCES answers (id),
    position    BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (answer_id, position)
);

-- One entry per accepted answer revision: the UNIQUE answer_id is what makes
-- "a case-file entry is never written twice" hold under any retry.
CREATE TABLE case_file_entries (
    id         BIGSERIAL PRIMARY KEY,
    case_id    TEXT NOT NULL REFERENCES cases (id),
    inquiry_id TEXT NOT NULL,
    answer_id  BIGINT NOT NULL UNIQUE REFERENCES answers (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX case_file_entries_case ON case_file_entries (case_id);
