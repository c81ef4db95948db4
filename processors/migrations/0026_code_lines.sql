-- Lines of code at head (docs/events.md, "blob.code"; docs/metrics.md, files v5, hotspots v4):
-- events now carry, per file change and per merge file, the change of the blob's lines of code
-- (lines holding something other than whitespace and comments); the processors sum them per
-- path.
--
-- As migration 0025 does for the other blob measures: the facts keep them (a file_changes
-- column; commits.merge_files arrays gain a seventh element), null where the event had none.
-- Every contribution stored so far had none: file_stats' counter of unknown contributions
-- starts at its number of changes (file_merge_lines is rebuilt from the facts after this
-- file, processors/rebuild.py), so no lines of code are served from them until the history is
-- published again, which the mark below asks of every repository's next poll (processors/
-- store.py REPUBLISH): its commits are retracted and published anew with the lines of code.
ALTER TABLE file_changes ADD COLUMN blob_code bigint;

ALTER TABLE file_stats
    ADD COLUMN blob_code bigint NOT NULL DEFAULT 0,         -- sum of code lines after - before
    ADD COLUMN code_unknown bigint NOT NULL DEFAULT 0;      -- changes without lines of code
UPDATE file_stats SET code_unknown = commits;

ALTER TABLE file_merge_lines
    ADD COLUMN blob_code bigint NOT NULL DEFAULT 0,
    ADD COLUMN code_unknown bigint NOT NULL DEFAULT 0;

UPDATE repos r SET mailmap_sha = 'republish'
WHERE EXISTS (SELECT 1 FROM commits c WHERE c.repo_id = r.id);
