-- The identity key of each commit's author is stored with its facts (`commits.author_key`):
-- Python's str.lower of the author email (processors/emailkey.py), which PostgreSQL's lower()
-- is not (it depends on the collation, and maps U+0130 otherwise in every one). The metric rows
-- are keyed by it; retraction finds an author's remaining commits by it (processors/retract.py),
-- where it compared lower(author_email) with keys lower-cased by Python, and missed the
-- commits of authors whose emails the two lower-case differently.
--
-- The keys of the stored commits are computed after this file by Python (processors/
-- rebuild.py, in the same transaction), which then makes the column NOT NULL.
ALTER TABLE commits ADD COLUMN author_key text;
DROP INDEX commits_author_email;
CREATE INDEX commits_author_key ON commits (repo_id, author_key);
