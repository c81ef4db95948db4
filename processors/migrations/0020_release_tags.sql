-- Release tags (docs/metrics.md, "releases"): the last tags snapshot applied per repository.
--
-- A tags event replaces a repository's rows here (a tag that moved or vanished is retracted by
-- the next snapshot). Which commits each release brings is derived on read from these rows and
-- the commit graph in `commits`, so a moved tag, a deleted tag and a force-push are exact with
-- nothing else to undo.
CREATE TABLE release_tags (
    repo_id    bigint NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    name       text NOT NULL,
    sha        text NOT NULL,
    tagged_at  timestamptz NOT NULL,
    tz_seconds int NOT NULL,
    annotated  boolean NOT NULL,
    PRIMARY KEY (repo_id, name)
);

-- The digest of the tag set a poller last published and the bus acknowledged (written by the
-- poller), and of the set the processors last applied (written with it, in the batch's
-- transaction). NULL: the empty set. A poll publishes a snapshot when the mirror's set differs
-- from either: the first catches a change, the second a snapshot the bus lost.
ALTER TABLE repos ADD COLUMN tags_published text;
ALTER TABLE repos ADD COLUMN tags_applied text;
