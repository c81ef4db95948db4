-- The recorded date text of an author or committer date that a timestamp cannot hold as git
-- shows it (no date, after year 9999, an offset of 24 hours or more): the event's `time_raw`
-- (docs/events.md, "Dates"). NULL when the stored time is exactly git's.
ALTER TABLE commits ADD COLUMN author_time_raw text, ADD COLUMN committer_time_raw text;
