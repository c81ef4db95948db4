-- metre schema v2: the watermark every metric result is stamped with, and the additive tables of
-- the contributors, punch card, commit size and languages metrics (processors/metrics/*.py
-- declare them as MetricTable specs; the store builds their upserts from those).

-- When this repository's metric tables last changed (the commit time of the batch that changed
-- them), and how many batches have changed them: results, ETags and caches key on these.
ALTER TABLE repos
    ADD COLUMN watermark  timestamptz,
    ADD COLUMN generation bigint NOT NULL DEFAULT 0;

-- Commits per author (lower-cased email) per UTC author day: contributors are derived from it.
CREATE TABLE author_days (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    email    text NOT NULL,
    day      date NOT NULL,
    commits  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, email, day)
);

-- Commits per weekday (0 = Monday) and hour of the author's own local time.
CREATE TABLE punchcard (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    weekday  smallint NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    hour     smallint NOT NULL CHECK (hour BETWEEN 0 AND 23),
    commits  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, weekday, hour)
);

-- The exact distribution of non-merge commit sizes: how many commits changed `value` files
-- (measure 'files') or `value` lines added + removed (measure 'lines').
CREATE TABLE commit_sizes (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    measure  text NOT NULL CHECK (measure IN ('files', 'lines')),
    value    bigint NOT NULL,
    commits  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, measure, value)
);

-- Lines added and removed per language (from the file name; binary files excluded), and the
-- number of text file changes counted.
CREATE TABLE language_lines (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    language text NOT NULL,
    changes  bigint NOT NULL DEFAULT 0,
    added    bigint NOT NULL DEFAULT 0,
    removed  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, language)
);
