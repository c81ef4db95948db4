-- metre schema v3: per-file history (files, hotspots, ownership and truck factor) and co-change
-- coupling. All columns but the latest change are counters: retraction adds negated deltas.
-- Declared as MetricTable specs in processors/metrics/files.py and coupling.py.

-- Per path ever seen in the tracked history (non-merge commits; --no-renames).
CREATE TABLE file_stats (
    repo_id         bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path            text NOT NULL,
    commits         bigint NOT NULL DEFAULT 0,
    added           bigint NOT NULL DEFAULT 0,
    removed         bigint NOT NULL DEFAULT 0,
    presence        bigint NOT NULL DEFAULT 0,      -- adds minus deletes: present at head when > 0
    binary_changes  bigint NOT NULL DEFAULT 0,      -- changes git counted as binary
    last_change_at  timestamptz NOT NULL,           -- latest author time (UTC)
    last_binary     boolean NOT NULL,               -- whether that latest change was binary
    PRIMARY KEY (repo_id, path)
);

-- Per (path, lower-cased author email): the degree-of-authorship inputs.
CREATE TABLE file_authors (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path     text NOT NULL,
    email    text NOT NULL,
    commits  bigint NOT NULL DEFAULT 0,
    created  bigint NOT NULL DEFAULT 0,             -- times this author added the path
    added    bigint NOT NULL DEFAULT 0,
    removed  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, path, email)
);

-- Per (path, email, UTC author day): commits, for hotspots over a window.
CREATE TABLE file_author_days (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path     text NOT NULL,
    email    text NOT NULL,
    day      date NOT NULL,
    commits  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, path, email, day)
);
CREATE INDEX file_author_days_window ON file_author_days (repo_id, day);

-- Co-change coupling, by the size (files) of the commit so that the size limit is a read
-- parameter; commits of more than 100 files are not stored.
CREATE TABLE coupling_files (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path     text NOT NULL,
    size     smallint NOT NULL CHECK (size BETWEEN 1 AND 100),
    commits  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, path, size)
);

CREATE TABLE coupling_pairs (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    path_a   text NOT NULL,                         -- path_a < path_b (code point order)
    path_b   text NOT NULL,
    size     smallint NOT NULL CHECK (size BETWEEN 2 AND 100),
    shared   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, path_a, path_b, size)
);
CREATE INDEX coupling_pairs_b ON coupling_pairs (repo_id, path_b);
