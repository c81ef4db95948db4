-- Identities (processors/identities.py, stored by processors/identitystore.py): which author
-- emails are one individual, its names, bot flag and organisation enrolments. Only individuals
-- someone changed are stored: an email no row names is its own individual implicitly (id
-- md5('metre-identity:' || email), bot by the well-known patterns), so nothing is seeded and a
-- new author needs no write. The metric tables stay keyed by email: reads regroup through
-- identity_emails, so a change here re-attributes history at once without a re-ingest.
CREATE TABLE identity_individuals (
    id          text PRIMARY KEY,
    bot         boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Lower-cased as the metric tables key them (Python's str.lower); one individual per email.
CREATE TABLE identity_emails (
    email           text PRIMARY KEY,
    individual_id   text NOT NULL REFERENCES identity_individuals (id) ON DELETE CASCADE
);
CREATE INDEX identity_emails_individual ON identity_emails (individual_id);

CREATE TABLE identity_names (
    individual_id   text NOT NULL REFERENCES identity_individuals (id) ON DELETE CASCADE,
    name            text NOT NULL,
    PRIMARY KEY (individual_id, name)
);

-- Days, both inclusive; SortingHat's open bounds are 1900-01-01 and 2100-01-01. The model
-- refuses reversed and overlapping ranges before anything is written.
CREATE TABLE identity_enrolments (
    individual_id   text NOT NULL REFERENCES identity_individuals (id) ON DELETE CASCADE,
    organisation    text NOT NULL,
    start_date      date NOT NULL,
    end_date        date NOT NULL CHECK (end_date >= start_date),
    PRIMARY KEY (individual_id, start_date, organisation)
);

-- One row: how many changes the identities have had. Writers lock it (one change at a time);
-- people metrics put it in their ETag and provenance, so a cached result never outlives the
-- mapping it was computed with, on any API replica.
CREATE TABLE identity_state (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    generation  bigint NOT NULL DEFAULT 0
);
INSERT INTO identity_state DEFAULT VALUES;
