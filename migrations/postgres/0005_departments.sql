-- Department connectors: the last snapshot of each department's records per
-- case, the log of every fetch, file-linkage imports, change alerts and the
-- case-file feed's outbox.

-- The records a case's last complete fetch returned, per department. A new
-- complete fetch replaces them; the difference becomes change alerts.
CREATE TABLE department_records (
    case_id        TEXT NOT NULL REFERENCES cases (id),
    department     TEXT NOT NULL,
    source_id      TEXT NOT NULL,
    subject_id     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    effective_date TEXT NOT NULL,
    amounts        TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    fetched_at     BIGINT NOT NULL,
    PRIMARY KEY (case_id, department, source_id)
);

-- The subjects each department has answered for at least once: what it
-- first says about a subject is the baseline, not a change.
CREATE TABLE department_baselines (
    case_id    TEXT NOT NULL REFERENCES cases (id),
    department TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    PRIMARY KEY (case_id, department, subject_id)
);

-- One row per connector per fetch: complete, partial or failed, and why.
CREATE TABLE department_fetches (
    id           BIGSERIAL PRIMARY KEY,
    case_id      TEXT NOT NULL REFERENCES cases (id),
    run_id       TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    department   TEXT NOT NULL,
    status       TEXT NOT NULL,
    records      BIGINT NOT NULL,
    changes      BIGINT NOT NULL,
    error        TEXT,
    started_at   BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL
);
CREATE INDEX department_fetches_case ON department_fetches (case_id, id);

-- File linkage: every file picked up, once (by name and content hash), with
-- what it loaded and the lines it refused.
CREATE TABLE linkage_files (
    id          BIGSERIAL PRIMARY KEY,
    department  TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    loaded_rows BIGINT NOT NULL,
    errors      TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    UNIQUE (department, sha256)
);

-- The records the departments' files hold, keyed by the person they are
-- about (normalised kana and birth date); a later file replaces a record
-- with the same source id.
CREATE TABLE linkage_records (
    department     TEXT NOT NULL,
    source_id      TEXT NOT NULL,
    kana_name      TEXT NOT NULL,
    birth_date     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    effective_date TEXT NOT NULL,
    amounts        TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    file_id        BIGINT NOT NULL,
    PRIMARY KEY (department, source_id)
);
CREATE INDEX linkage_records_person ON linkage_records (department, kana_name, birth_date);

-- Change alerts carry what changed; dedup_key makes the same change raise
-- one alert however often it is seen.
ALTER TABLE case_alerts ADD COLUMN department TEXT;
ALTER TABLE case_alerts ADD COLUMN subject_id TEXT;
ALTER TABLE case_alerts ADD COLUMN record_kind TEXT;
ALTER TABLE case_alerts ADD COLUMN field TEXT;
ALTER TABLE case_alerts ADD COLUMN before_value TEXT;
ALTER TABLE case_alerts ADD COLUMN after_value TEXT;
ALTER TABLE case_alerts ADD COLUMN effective_date TEXT;
ALTER TABLE case_alerts ADD COLUMN suggested_action TEXT;
ALTER TABLE case_alerts ADD COLUMN dedup_key TEXT;
CREATE UNIQUE INDEX case_alerts_dedup ON case_alerts (case_id, dedup_key);

-- The case-file feed's outbox: written in the transaction of what it tells,
-- sent as signed webhooks under a lease with a fencing token.
CREATE TABLE feed_events (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    case_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    subject_ref     TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    first_attempt_at BIGINT,
    claim_token     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT
);
CREATE INDEX feed_events_due ON feed_events (state, next_attempt_at);

-- Periodic tasks that one process of many should run (the re-query): the
-- holder keeps the row while its lease lasts.
CREATE TABLE task_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
