-- The registry's count of the commits ingested per repository (`RepoRow.commits`, served by
-- GET /api/v1/repos) is kept in the repository's row by the sink, in the transaction that adds
-- or retracts the commits (processors/sink.py), instead of being summed over activity_daily at
-- every read of the registry. It starts as the count of the stored facts, which is what that
-- sum is (every commit adds 1 to one activity_daily row, every retraction takes it back).
ALTER TABLE repos ADD COLUMN commits bigint NOT NULL DEFAULT 0;
UPDATE repos r SET commits = c.n
FROM (SELECT repo_id, count(*) AS n FROM commits GROUP BY repo_id) c
WHERE c.repo_id = r.id;
