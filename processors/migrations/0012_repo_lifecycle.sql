-- Repository lifecycle: paused and abandoned repositories, and removals told to the topics.
--
-- The state CHECK is the full superset every branch agrees on (so migrations that rewrite it
-- may land in any order): 'paused' and 'abandoned' here, 'lagging' for the freshness check.
ALTER TABLE repos DROP CONSTRAINT IF EXISTS repos_state_check;
ALTER TABLE repos ADD CONSTRAINT repos_state_check CHECK (
    state IN ('pending', 'polling', 'idle', 'failed', 'paused', 'abandoned', 'lagging'));

-- Set while a repository is paused (not polled; its metrics kept). The source of truth for
-- "paused": a poll that was under way when it was paused ends in 'paused', not 'idle'.
ALTER TABLE repos ADD COLUMN paused_at timestamptz;
-- Start of the current run of failed polls (NULL: the last poll succeeded); a repository that
-- fails for METRE_GIVE_UP_AFTER seconds in a row is abandoned.
ALTER TABLE repos ADD COLUMN failing_since timestamptz;

-- An outbox of removed repositories: `DELETE /api/v1/repos/{id}` deletes the repository, its
-- facts and metric rows in one transaction and records here the commits it held. A poller
-- (which has the bus and the mirrors) publishes one retraction per commit and a removal
-- notice, deletes its mirror, then deletes the row. Repository ids are never reused.
CREATE TABLE repo_removals (
    repo_id     bigint PRIMARY KEY,
    url         text NOT NULL,
    shas        text[] NOT NULL,
    generation  bigint NOT NULL DEFAULT 0,
    removed_at  timestamptz NOT NULL DEFAULT now()
);
