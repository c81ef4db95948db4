-- metre schema v4: what history rewrites and .mailmap need.

-- The .mailmap blob (sha) the published history was mapped with; NULL: none at the head.
-- A different blob at the new head re-attributes the history (retract all, republish all).
ALTER TABLE repos ADD COLUMN mailmap_sha text;

-- Retraction recomputes an author's first/last commit and name from that author's remaining
-- commits (processors/retract.py); this finds them without reading the repository's history.
CREATE INDEX commits_author_email ON commits (repo_id, lower(author_email));
