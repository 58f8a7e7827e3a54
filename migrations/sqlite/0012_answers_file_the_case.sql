-- An accepted answer revision is its case-file entry: the answer row
-- carries its case, and case_file_entries (one row per answer, and its
-- indexes and foreign-key checks on every answer) is gone. The case is
-- copied from the inquiry the answer is for; "a case-file entry is never
-- written twice" is the answers' UNIQUE (inquiry_id, revision), as it was
-- underneath before. SQLite adds a NOT NULL column only with a default;
-- every row gets its case here and every insert names it.
ALTER TABLE answers ADD COLUMN case_id TEXT NOT NULL DEFAULT '';
UPDATE answers SET case_id = (SELECT i.case_id FROM inquiries i WHERE i.id = answers.inquiry_id);
CREATE INDEX answers_case ON answers (case_id);
DROP TABLE case_file_entries;
