-- Coupling is computed on read from file_changes (processors/filereads.py): its pair table was
-- written n(n-1)/2 times per commit of n files, a third of a processor's time on a backfill.
DROP TABLE IF EXISTS coupling_pairs;
DROP TABLE IF EXISTS coupling_files;
