-- Push webhooks (api/routes/hooks.py, docs/webhooks.md).
--
-- The secret a repository's push webhooks are signed with. Stored as given: an HMAC can only
-- be checked with the key itself, so it cannot be hashed. The API never returns it (only
-- whether one is set) and nothing logs it; protect the database accordingly.
ALTER TABLE repos ADD COLUMN webhook_secret text;

-- Delivery ids already accepted (GitHub X-GitHub-Delivery, Gitea X-Gitea-Delivery, GitLab
-- Idempotency-Key or X-Gitlab-Event-UUID, metre's X-Metre-Delivery), kept for
-- METRE_WEBHOOK_REPLAY_WINDOW seconds: a delivery seen again within it is refused (409).
CREATE TABLE webhook_deliveries (
    provider     text NOT NULL,
    delivery_id  text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, delivery_id)
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
