-- Identifiers compare byte by byte. Under the database's default collation
-- (C.UTF-8 here; ja_JP.UTF-8 in many cities) PostgreSQL compares text with
-- strcoll, and every inquiry writes and rewrites some twenty index entries
-- keyed on ids: collation lookups and strcoll were about 7 % of the server's
-- CPU in the bench's profile. The values are ASCII codes, hex ids, states
-- and tokens, so "C" sorts them as before and equality is unchanged. Names,
-- addresses and free text keep the database's collation.
--
-- Every column that is joined or compared with another is changed here, so
-- that no comparison meets two collations. The type stays text, so the
-- tables are not rewritten; their indexes and foreign keys are rebuilt.
ALTER TABLE institutions ALTER COLUMN code TYPE text COLLATE "C";
ALTER TABLE branches
    ALTER COLUMN institution_code TYPE text COLLATE "C",
    ALTER COLUMN code TYPE text COLLATE "C";
ALTER TABLE bank_client_certs
    ALTER COLUMN fingerprint TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C";
ALTER TABLE api_tokens
    ALTER COLUMN token_hash TYPE text COLLATE "C",
    ALTER COLUMN role TYPE text COLLATE "C",
    ALTER COLUMN office TYPE text COLLATE "C";
ALTER TABLE cases
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN office TYPE text COLLATE "C",
    ALTER COLUMN created_by TYPE text COLLATE "C",
    ALTER COLUMN form_key TYPE text COLLATE "C";
ALTER TABLE subjects
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN case_id TYPE text COLLATE "C";
ALTER TABLE requests
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN actor TYPE text COLLATE "C",
    ALTER COLUMN idempotency_key TYPE text COLLATE "C",
    ALTER COLUMN body_hash TYPE text COLLATE "C";
ALTER TABLE inquiries
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN request_id TYPE text COLLATE "C",
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN subject_id TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C",
    ALTER COLUMN state TYPE text COLLATE "C",
    ALTER COLUMN batch_id TYPE text COLLATE "C";
ALTER TABLE inquiry_events
    ALTER COLUMN inquiry_id TYPE text COLLATE "C",
    ALTER COLUMN from_state TYPE text COLLATE "C",
    ALTER COLUMN to_state TYPE text COLLATE "C";
ALTER TABLE batches
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C",
    ALTER COLUMN state TYPE text COLLATE "C",
    ALTER COLUMN claim_token TYPE text COLLATE "C";
ALTER TABLE batch_payloads ALTER COLUMN batch_id TYPE text COLLATE "C";
ALTER TABLE delivery_attempts
    ALTER COLUMN batch_id TYPE text COLLATE "C",
    ALTER COLUMN claim_token TYPE text COLLATE "C",
    ALTER COLUMN outcome TYPE text COLLATE "C";
ALTER TABLE answers
    ALTER COLUMN inquiry_id TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C",
    ALTER COLUMN response_id TYPE text COLLATE "C",
    ALTER COLUMN outcome TYPE text COLLATE "C",
    ALTER COLUMN content_hash TYPE text COLLATE "C";
ALTER TABLE answer_accounts ALTER COLUMN branch_code TYPE text COLLATE "C";
ALTER TABLE case_file_entries
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN inquiry_id TYPE text COLLATE "C";
ALTER TABLE case_alerts
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN inquiry_id TYPE text COLLATE "C",
    ALTER COLUMN acknowledged_by TYPE text COLLATE "C",
    ALTER COLUMN department TYPE text COLLATE "C",
    ALTER COLUMN subject_id TYPE text COLLATE "C",
    ALTER COLUMN record_kind TYPE text COLLATE "C",
    ALTER COLUMN dedup_key TYPE text COLLATE "C";
ALTER TABLE case_declared_institutions
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C";
ALTER TABLE office_institutions
    ALTER COLUMN office TYPE text COLLATE "C",
    ALTER COLUMN institution_code TYPE text COLLATE "C";
ALTER TABLE audit_head ALTER COLUMN hash TYPE text COLLATE "C";
ALTER TABLE audit_log
    ALTER COLUMN actor TYPE text COLLATE "C",
    ALTER COLUMN role TYPE text COLLATE "C",
    ALTER COLUMN office TYPE text COLLATE "C",
    ALTER COLUMN action TYPE text COLLATE "C",
    ALTER COLUMN target TYPE text COLLATE "C",
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN prev_hash TYPE text COLLATE "C",
    ALTER COLUMN hash TYPE text COLLATE "C";
ALTER TABLE feed_events
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN state TYPE text COLLATE "C",
    ALTER COLUMN claim_token TYPE text COLLATE "C";
ALTER TABLE department_records
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN department TYPE text COLLATE "C",
    ALTER COLUMN source_id TYPE text COLLATE "C",
    ALTER COLUMN subject_id TYPE text COLLATE "C",
    ALTER COLUMN kind TYPE text COLLATE "C";
ALTER TABLE department_baselines
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN department TYPE text COLLATE "C",
    ALTER COLUMN subject_id TYPE text COLLATE "C";
ALTER TABLE department_fetches
    ALTER COLUMN case_id TYPE text COLLATE "C",
    ALTER COLUMN run_id TYPE text COLLATE "C",
    ALTER COLUMN department TYPE text COLLATE "C";
ALTER TABLE linkage_files
    ALTER COLUMN department TYPE text COLLATE "C",
    ALTER COLUMN sha256 TYPE text COLLATE "C";
ALTER TABLE linkage_records
    ALTER COLUMN department TYPE text COLLATE "C",
    ALTER COLUMN source_id TYPE text COLLATE "C";
ALTER TABLE users
    ALTER COLUMN username TYPE text COLLATE "C",
    ALTER COLUMN role TYPE text COLLATE "C",
    ALTER COLUMN office TYPE text COLLATE "C";
ALTER TABLE sessions
    ALTER COLUMN token_hash TYPE text COLLATE "C",
    ALTER COLUMN username TYPE text COLLATE "C";
ALTER TABLE login_failures ALTER COLUMN throttle_key TYPE text COLLATE "C";
ALTER TABLE task_leases
    ALTER COLUMN name TYPE text COLLATE "C",
    ALTER COLUMN holder TYPE text COLLATE "C";
