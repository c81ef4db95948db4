-- Notifications: where to deliver (targets), what to watch (rules), what each rule last saw
-- (conditions), what fired (alerts) and the digests that carried them (deliveries).

CREATE TABLE notify_targets (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('slack', 'mattermost', 'webhook')),
    url         text NOT NULL,                  -- checked like repository URLs at registration
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- repo_id NULL: every repository (for the per-repository kinds). No foreign key: a removed
-- repository's rules fall silent (nothing matches) and can be deleted by their owner.
CREATE TABLE notify_rules (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL
                CHECK (kind IN ('failing', 'stale', 'lagging', 'truck_factor', 'dead_letters', 'lag')),
    repo_id     bigint,
    threshold   double precision NOT NULL,
    target_id   bigint NOT NULL REFERENCES notify_targets (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- What a rule last saw of one subject ('repo:42', 'pipeline'): an alert is raised when a
-- condition starts and when it ends, never while it lasts.
CREATE TABLE notify_conditions (
    rule_id     bigint NOT NULL REFERENCES notify_rules (id) ON DELETE CASCADE,
    subject     text NOT NULL,
    firing      boolean NOT NULL,
    value       double precision,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, subject)
);

CREATE TABLE notify_deliveries (
    id              bigserial PRIMARY KEY,
    target_id       bigint NOT NULL REFERENCES notify_targets (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    alerts          integer NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (next_attempt_at) WHERE status = 'pending';

-- delivery_id NULL: waiting for the target's next digest.
CREATE TABLE notify_alerts (
    id          bigserial PRIMARY KEY,
    rule_id     bigint NOT NULL REFERENCES notify_rules (id) ON DELETE CASCADE,
    target_id   bigint NOT NULL REFERENCES notify_targets (id) ON DELETE CASCADE,
    repo_id     bigint,
    kind        text NOT NULL,
    resolved    boolean NOT NULL,               -- true: the condition ended
    message     text NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    delivery_id bigint REFERENCES notify_deliveries (id) ON DELETE SET NULL
);
CREATE INDEX notify_alerts_waiting ON notify_alerts (target_id) WHERE delivery_id IS NULL;
