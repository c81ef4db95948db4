-- Detecting and healing data loss on the bus (ingest/buswatch.py, processors/busmarks.py).
--
-- bus_marks: per topic partition, what the roles have seen of the broker: its cluster id, the
-- highest end offset it reported and the highest offset it acknowledged to a produce. Offsets
-- of a log only grow, so a broker answering below a mark lost records (a restart without
-- storage, a topic deleted and created again, a truncation).
CREATE TABLE bus_marks (
    topic       text NOT NULL,
    partition   integer NOT NULL,
    cluster_id  text,
    partitions  integer NOT NULL,      -- partitions of the topic when the mark was taken
    end_seen    bigint NOT NULL DEFAULT 0,
    produced    bigint NOT NULL DEFAULT -1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- One row per loss found: what, where, who saw it, which repositories it touched, and the heal.
CREATE TABLE data_loss_events (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,
    topic        text NOT NULL,
    partitions   integer[] NOT NULL,
    detail       text NOT NULL,
    role         text NOT NULL,
    repo_ids     bigint[] NOT NULL DEFAULT '{}',
    detected_at  timestamptz NOT NULL DEFAULT now(),
    healed_at    timestamptz,
    republished  integer NOT NULL DEFAULT 0
);

-- The freshness check: set while the stored head is not applied after METRE_LAG_INTERVALS
-- poll intervals, with the reason; NULL once it is. head_at: when the head last changed.
ALTER TABLE repos ADD COLUMN lagging_reason text;
ALTER TABLE repos ADD COLUMN head_at timestamptz;
UPDATE repos SET head_at = last_polled_at WHERE head IS NOT NULL;

CREATE FUNCTION repos_head_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.head IS DISTINCT FROM OLD.head THEN
        NEW.head_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER repos_head_at BEFORE UPDATE OF head ON repos
    FOR EACH ROW EXECUTE FUNCTION repos_head_at();
