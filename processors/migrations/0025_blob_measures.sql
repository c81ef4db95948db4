-- Blob measures at head (docs/events.md, "blob"; docs/metrics.md, files v4, languages v4):
-- events now carry, per file change and per merge file, the change of the blob's size, binary
-- state and text size; the processors sum them per path and per language.
--
-- The facts keep them (file_changes columns; commits.merge_files arrays gain three elements),
-- null where the event had none. Every contribution stored so far had none: the counters of
-- unknown contributions start at the number of contributions (file_stats: its changes; the
-- language and merge tables are rebuilt from the facts after this file, processors/rebuild.py),
-- so nothing is served from them until the history is published again, which the mark below
-- asks of every repository's next poll (as migration 0017 does: processors/store.py
-- REPUBLISH): its commits are retracted and published anew with the measures.
ALTER TABLE file_changes
    ADD COLUMN blob_bytes bigint,
    ADD COLUMN blob_binary smallint,
    ADD COLUMN blob_text_bytes bigint;

ALTER TABLE file_stats
    ADD COLUMN blob_bytes bigint NOT NULL DEFAULT 0,        -- sum of size after - before
    ADD COLUMN blob_binary bigint NOT NULL DEFAULT 0,       -- 1 at head when binary
    ADD COLUMN blob_text_bytes bigint NOT NULL DEFAULT 0,   -- the size when not binary
    ADD COLUMN blob_unknown bigint NOT NULL DEFAULT 0;      -- changes without measures
UPDATE file_stats SET blob_unknown = commits;

ALTER TABLE file_merge_lines
    ADD COLUMN blob_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN blob_binary bigint NOT NULL DEFAULT 0,
    ADD COLUMN blob_text_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN blob_unknown bigint NOT NULL DEFAULT 0;

ALTER TABLE language_lines
    ADD COLUMN binary_changes bigint NOT NULL DEFAULT 0,    -- counted only in the bytes
    ADD COLUMN text_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN blob_unknown bigint NOT NULL DEFAULT 0;

ALTER TABLE language_merge_lines
    ADD COLUMN text_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN blob_unknown bigint NOT NULL DEFAULT 0;

UPDATE repos r SET mailmap_sha = 'republish'
WHERE EXISTS (SELECT 1 FROM commits c WHERE c.repo_id = r.id);
