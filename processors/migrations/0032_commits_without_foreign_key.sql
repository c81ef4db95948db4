-- commits no longer carries a foreign key to repos: its check (a lookup and a key-share lock of
-- the repository for each inserted commit) was about half the time of inserting a batch's
-- commits. The sink takes the same lock once per repository of the batch instead, before it
-- inserts, and inserts only the commits of repositories that exist then (processors/sink.py),
-- so a repository's removal, which takes its row FOR UPDATE (processors/registry.py
-- `delete_repo`), waits for such a batch, and a later batch finds no repository. The removal
-- deletes the repository's commits itself, as it does its file changes and metric rows (0007,
-- 0010), in the transaction that deletes the repository.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT con.conname FROM pg_constraint con
        WHERE con.contype = 'f' AND con.conrelid = 'commits'::regclass
          AND con.confrelid = 'repos'::regclass
    LOOP
        EXECUTE format('ALTER TABLE commits DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;
