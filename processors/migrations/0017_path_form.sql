-- metre schema v17: paths in path form 2 (ingest/paths.py, docs/metrics.md "Paths").
--
-- Form 1 wrote a byte that is not UTF-8 as \xNN but left a backslash as itself, so a path with a
-- backslash could stand for two git paths (the raw byte 0xE9 and the four characters "\xe9"),
-- and their rows were merged. Form 2 doubles every backslash. Stored facts cannot be translated
-- (which git path a merged row came from is lost), so every repository holding a path with a
-- backslash is published again by its next poll: the marker below is no .mailmap blob's name,
-- so the poller retracts every published commit and publishes the whole history anew, exactly
-- as after a change of .mailmap (processors/store.py: REPUBLISH). Paths without a backslash
-- (nearly all) are the same in both forms; those repositories are left alone.
UPDATE repos r SET mailmap_sha = 'republish'
WHERE r.id IN (SELECT DISTINCT f.repo_id FROM file_changes f WHERE strpos(f.path, '\') > 0)
   OR r.id IN (
        SELECT DISTINCT c.repo_id
        FROM commits c, jsonb_array_elements(c.merge_files) m
        WHERE c.is_merge AND strpos(m ->> 0, '\') > 0
   );
