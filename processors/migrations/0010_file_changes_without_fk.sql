-- file_changes no longer carries a foreign key to commits: its check (a lookup and a key-share
-- lock of the commit per row) was half the cost of inserting a batch's file changes. They stay
-- consistent without it: they are inserted in the transaction that inserts their commits, and
-- deleted explicitly wherever their commits are (processors/retract.py, PgStore.delete_repo).
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT con.conname FROM pg_constraint con
        WHERE con.contype = 'f' AND con.conrelid = 'file_changes'::regclass
    LOOP
        EXECUTE format('ALTER TABLE file_changes DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;
