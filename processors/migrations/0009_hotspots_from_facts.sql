-- Hotspots read their window from the facts (file_changes joined with commits by author time,
-- processors/filereads.py); file_author_days only copied them, one upserted row per file change.
DROP TABLE IF EXISTS file_author_days;
