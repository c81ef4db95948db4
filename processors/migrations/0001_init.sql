-- metre schema v1: the repository registry, facts (commits, file changes) and additive metrics.

CREATE TABLE repos (
    id              bigserial PRIMARY KEY,
    url             text NOT NULL UNIQUE,
    branch          text,                          -- NULL: the remote HEAD
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'polling', 'idle', 'failed')),
    error           text,
    head            text,                          -- last sha whose history was published and acknowledged
    failures        integer NOT NULL DEFAULT 0,    -- consecutive failed polls (drives the backoff)
    progress_done   integer NOT NULL DEFAULT 0,    -- commits published in the current poll
    progress_total  integer NOT NULL DEFAULT 0,    -- commits to publish in the current poll
    lease_until     timestamptz,                   -- a poller owns the repository until then
    poll_requested  boolean NOT NULL DEFAULT false, -- asked to poll while a poll was running: poll again at once
    next_poll_at    timestamptz NOT NULL DEFAULT now(),
    last_polled_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repos_due ON repos (next_poll_at);

-- Facts. The primary key of commits is also the dedup set: an event whose (repo_id, sha) is
-- already here was applied before and is skipped.
CREATE TABLE commits (
    repo_id         bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    sha             text NOT NULL,
    parents         text[] NOT NULL,
    author_name     text NOT NULL,
    author_email    text NOT NULL,                 -- as recorded (after .mailmap)
    author_time     timestamptz NOT NULL,
    author_tz       integer NOT NULL,              -- the author's UTC offset, minutes
    committer_name  text NOT NULL,
    committer_email text NOT NULL,
    committer_time  timestamptz NOT NULL,
    committer_tz    integer NOT NULL,
    summary         text NOT NULL,
    is_merge        boolean NOT NULL,
    files           integer NOT NULL,
    added           bigint NOT NULL,
    removed         bigint NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, sha)
);
CREATE INDEX commits_author_time ON commits (repo_id, author_time);

-- Written only together with their new commit row, in the same transaction.
CREATE TABLE file_changes (
    repo_id  bigint NOT NULL,
    sha      text NOT NULL,
    seq      integer NOT NULL,                     -- position in the commit's numstat output
    path     text NOT NULL,
    added    bigint NOT NULL,
    removed  bigint NOT NULL,
    is_binary boolean NOT NULL,
    change   char(1) NOT NULL,
    PRIMARY KEY (repo_id, sha, seq),
    FOREIGN KEY (repo_id, sha) REFERENCES commits (repo_id, sha) ON DELETE CASCADE
);

-- Metrics: rows are only ever changed by merging deltas (processors/metrics). Counters add up
-- (and are retracted by adding negated deltas); first/last commit times are kept with
-- LEAST/GREATEST and the name with the latest (time, name), so any order and duplicates agree.
CREATE TABLE activity_daily (
    repo_id  bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    day      date NOT NULL,                        -- author date in UTC
    commits  bigint NOT NULL DEFAULT 0,
    merges   bigint NOT NULL DEFAULT 0,
    added    bigint NOT NULL DEFAULT 0,
    removed  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, day)
);

CREATE TABLE author_totals (
    repo_id         bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    email           text NOT NULL,                 -- lower-cased: the identity
    name            text NOT NULL,                 -- the name on the author's latest commit (ties: greatest name)
    commits         bigint NOT NULL DEFAULT 0,
    added           bigint NOT NULL DEFAULT 0,
    removed         bigint NOT NULL DEFAULT 0,
    first_commit_at timestamptz NOT NULL,
    last_commit_at  timestamptz NOT NULL,
    PRIMARY KEY (repo_id, email)
);
