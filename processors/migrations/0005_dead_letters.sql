-- metre schema v5: poison records, visible through the API (GET /api/v1/pipeline).

-- One row per record a processor sent to the dead-letter topic, written in the transaction of
-- its batch. A redelivered poison record (a crash before the offsets were committed) matches
-- its first row and is not counted twice; the same offset after a broker restart that lost the
-- topic is another record when its payload differs.
CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    payload_md5 text NOT NULL,
    error text NOT NULL,
    payload text NOT NULL,
    payload_bytes integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset", payload_md5)
);
