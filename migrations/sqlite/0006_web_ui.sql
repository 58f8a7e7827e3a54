-- Local user accounts for the web UI, their sessions, and failed-login
-- counters for rate limiting.

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    office        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);

-- The cookie carries a random token; only its SHA-256 is stored. Each
-- session has its own CSRF token for the forms it renders.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users (username),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (username);

-- Failed logins per key (a username, or a client address) in the current
-- window; the key is locked once it reaches the limit.
CREATE TABLE login_failures (
    throttle_key TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);

-- The institutions an applicant declared on the application (a quick pick
-- on the request form).
CREATE TABLE case_declared_institutions (
    case_id          TEXT NOT NULL REFERENCES cases (id),
    institution_code TEXT NOT NULL REFERENCES institutions (code),
    PRIMARY KEY (case_id, institution_code)
);

-- Each office's standing list of local institutions to ask (調査先リスト),
-- kept by an admin.
CREATE TABLE office_institutions (
    office           TEXT NOT NULL,
    institution_code TEXT NOT NULL REFERENCES institutions (code),
    PRIMARY KEY (office, institution_code)
);

-- The new-case form's own key: a double submit files one case.
ALTER TABLE cases ADD COLUMN form_key TEXT;
CREATE UNIQUE INDEX cases_form_key ON cases (created_by, form_key);
