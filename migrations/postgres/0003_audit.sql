-- The hash-chained audit trail. audit_head holds the last number and hash;
-- appenders lock it, which keeps numbers gapless under concurrency.

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    office      TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    case_id     TEXT,
    purpose     TEXT,
    legal_basis TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_log_case ON audit_log (case_id);
CREATE INDEX audit_log_actor ON audit_log (actor, at);

CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
