-- The merge and empty-commit policy (processors/metrics/policy.py): every per-commit metric
-- table gets the commit's kind as its last key column (0: a non-merge commit with files in
-- `git log --numstat`, 1: an empty non-merge commit, 2: a merge), so a read sums the kinds its
-- policy counts and no policy needs a recompute.
--
-- The rows already there cannot be split by kind in SQL alone: after this file the migration
-- empties these tables and rebuilds them from the facts with the metrics' own folds
-- (processors/rebuild.py, run in the same transaction), which keys identities exactly as the
-- processors do (Python's str.lower, not PostgreSQL's lower()).
ALTER TABLE activity_daily ADD COLUMN kind smallint NOT NULL DEFAULT 0 CHECK (kind BETWEEN 0 AND 2);
ALTER TABLE activity_daily DROP CONSTRAINT activity_daily_pkey;
ALTER TABLE activity_daily ADD PRIMARY KEY (repo_id, day, kind);
ALTER TABLE activity_daily ALTER COLUMN kind DROP DEFAULT;

ALTER TABLE author_totals ADD COLUMN kind smallint NOT NULL DEFAULT 0 CHECK (kind BETWEEN 0 AND 2);
ALTER TABLE author_totals DROP CONSTRAINT author_totals_pkey;
ALTER TABLE author_totals ADD PRIMARY KEY (repo_id, email, kind);
ALTER TABLE author_totals ALTER COLUMN kind DROP DEFAULT;

ALTER TABLE author_days ADD COLUMN kind smallint NOT NULL DEFAULT 0 CHECK (kind BETWEEN 0 AND 2);
ALTER TABLE author_days DROP CONSTRAINT author_days_pkey;
ALTER TABLE author_days ADD PRIMARY KEY (repo_id, email, day, kind);
ALTER TABLE author_days ALTER COLUMN kind DROP DEFAULT;

ALTER TABLE punchcard ADD COLUMN kind smallint NOT NULL DEFAULT 0 CHECK (kind BETWEEN 0 AND 2);
ALTER TABLE punchcard DROP CONSTRAINT punchcard_pkey;
ALTER TABLE punchcard ADD PRIMARY KEY (repo_id, weekday, hour, kind);
ALTER TABLE punchcard ALTER COLUMN kind DROP DEFAULT;

-- Merges now have rows here too (0 files, 0 lines: what numstat shows for them).
ALTER TABLE commit_sizes ADD COLUMN kind smallint NOT NULL DEFAULT 0 CHECK (kind BETWEEN 0 AND 2);
ALTER TABLE commit_sizes DROP CONSTRAINT commit_sizes_pkey;
ALTER TABLE commit_sizes ADD PRIMARY KEY (repo_id, measure, value, kind);
ALTER TABLE commit_sizes ALTER COLUMN kind DROP DEFAULT;
