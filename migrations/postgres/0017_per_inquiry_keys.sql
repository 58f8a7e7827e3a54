-- Rows written once per inquiry carry no foreign keys on PostgreSQL.
-- PostgreSQL checks a key with a query of its own for each new row. The
-- three keys of inquiries were more than half of a submit's time in the
-- server (a request of 100: 3.9 of 4.9 ms idle; under the bench's paced
-- load its write went from 10 to 4 ms at the median), and an answer's
-- keys (its inquiry, each account's answer) were checked per row as well.
--
-- Each parent is still checked, by the transaction that writes the row:
-- a submit inserts the request in the same statement; its subjects are
-- the case's own, read and matched by the submit, with the case row
-- locked against closing, so no purge can remove them before the commit;
-- institutions are checked against the directory and never deleted. An
-- answer's inquiry is read and locked by the filing that inserts it, and
-- its accounts, transactions and holdings go in with it. Retention
-- deletes children before parents. SQLite's 0017 drops the same keys.
ALTER TABLE inquiries DROP CONSTRAINT inquiries_request_id_fkey;
ALTER TABLE inquiries DROP CONSTRAINT inquiries_subject_id_fkey;
ALTER TABLE inquiries DROP CONSTRAINT inquiries_institution_code_fkey;
ALTER TABLE answers DROP CONSTRAINT answers_inquiry_id_fkey;
ALTER TABLE answer_accounts DROP CONSTRAINT answer_accounts_answer_id_fkey;
ALTER TABLE answer_transactions DROP CONSTRAINT answer_transactions_account_id_fkey;
ALTER TABLE answer_other_holdings DROP CONSTRAINT answer_other_holdings_answer_id_fkey;
