-- Metric rows no longer carry a foreign key to repos: its check ran once per inserted row
-- (a lookup and a key-share lock of the repository for each of the hundreds of thousands of
-- rows a backfill writes; about a quarter of the coupling_pairs upsert). They stay consistent
-- without it: metric rows are written only in the transaction that inserts (foreign key
-- checked) or locks the commits they come from, which holds the repository row against a
-- concurrent DELETE, and PgStore.delete_repo deletes them in the transaction that deletes the
-- repository, after it. Facts (commits, file_changes) keep their foreign keys.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT con.conrelid::regclass AS tab, con.conname
        FROM pg_constraint con
        WHERE con.contype = 'f' AND con.confrelid = 'repos'::regclass
          AND con.conrelid::regclass::text IN (
              'activity_daily', 'author_totals', 'author_days', 'punchcard', 'commit_sizes',
              'language_lines', 'language_merge_lines', 'file_stats', 'file_authors',
              'file_author_days', 'file_merge_lines', 'coupling_files', 'coupling_pairs')
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tab, c.conname);
    END LOOP;
END
$$;
