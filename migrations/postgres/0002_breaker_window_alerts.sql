-- Circuit breaker and delivery window per institution; alerts on cases.

ALTER TABLE institutions ADD COLUMN consecutive_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE institutions ADD COLUMN breaker_open_until BIGINT;
ALTER TABLE institutions ADD COLUMN delivery_window TEXT;

CREATE TABLE case_alerts (
    id              BIGSERIAL PRIMARY KEY,
    case_id         TEXT NOT NULL REFERENCES cases (id),
    kind            TEXT NOT NULL,
    inquiry_id      TEXT,
    detail          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT
);
CREATE INDEX case_alerts_case ON case_alerts (case_id);
