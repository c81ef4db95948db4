-- Languages by GitHub Linguist's rules (go-enry, processors/metrics/linguist.py) instead of
-- Pygments' file-name table: the stored `language_lines` and `language_merge_lines` rows are
-- keyed by the old names and include files Linguist does not count (vendored, generated,
-- documentation, lock, data and prose). No schema changes: after this file the migration
-- empties those tables (and `file_merge_lines`, written by the same module) and rebuilds them
-- from the stored facts with the metrics' own code (processors/rebuild.py), in this
-- transaction.
SELECT 1;
