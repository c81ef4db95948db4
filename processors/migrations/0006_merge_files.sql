-- metre schema v6: merges' own contribution to the tree (events v1 `merge_files`), so that the
-- state at head (a file's presence and length, a language's lines) equals git's.
-- Declared as MetricTable specs in processors/metrics/merges.py. All columns are counters.

-- The facts: a merge's merge_files as received (a JSON array), for retraction.
ALTER TABLE commits ADD COLUMN merge_files jsonb NOT NULL DEFAULT '[]';

-- Per path: what merges contributed beyond their parents' histories.
CREATE TABLE file_merge_lines (
    repo_id   bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path      text NOT NULL,
    merges    bigint NOT NULL DEFAULT 0,          -- merges contributing (keeps rows non-zero)
    lines     bigint NOT NULL DEFAULT 0,          -- signed: added to added - removed
    presence  bigint NOT NULL DEFAULT 0,          -- signed: added to file_stats.presence
    PRIMARY KEY (repo_id, path)
);

-- Per language: the same lines, summed by the language of the path.
CREATE TABLE language_merge_lines (
    repo_id   bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    language  text NOT NULL,
    merges    bigint NOT NULL DEFAULT 0,
    lines     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, language)
);
