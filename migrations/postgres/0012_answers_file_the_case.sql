-- An accepted answer revision is its case-file entry: the answer row
-- carries its case, and case_file_entries (one row per answer, three
-- indexes and two foreign-key checks on every answer) is gone. The case is
-- copied from the inquiry the answer is for, which the filing transaction
-- holds locked; "a case-file entry is never written twice" is the
-- answers' UNIQUE (inquiry_id, revision), as it was underneath before.
ALTER TABLE answers ADD COLUMN case_id TEXT COLLATE "C";
UPDATE answers SET case_id = (SELECT i.case_id FROM inquiries i WHERE i.id = answers.inquiry_id);
ALTER TABLE answers ALTER COLUMN case_id SET NOT NULL;
CREATE INDEX answers_case ON answers (case_id);
DROP TABLE case_file_entries;
