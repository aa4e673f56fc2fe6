-- Notifications to the portal and billers: a transactional outbox, retried with backoff, dead letters kept.
ALTER TABLE billers ADD COLUMN notify_url text, ADD COLUMN notify_secret text;

CREATE TABLE notifications (
    id           bigserial PRIMARY KEY,
    target       text NOT NULL,                 -- 'portal' or 'biller:<id>'
    url          text NOT NULL,
    event        text NOT NULL,                 -- order.paid, order.declined, order.expired, ...
    order_id     text NOT NULL REFERENCES orders (id),
    payload      jsonb NOT NULL,
    attempts     int NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL,
    delivered_at timestamptz,
    dead_at      timestamptz,
    last_error   text
);
CREATE INDEX notifications_due ON notifications (next_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX notifications_dead ON notifications (dead_at) WHERE dead_at IS NOT NULL;
