CREATE TABLE rtp (
    rtp_id       text PRIMARY KEY,
    switch_ref   text NOT NULL UNIQUE,
    amount       bigint NOT NULL CHECK (amount > 0),
    currency     text NOT NULL,
    channel_kind text NOT NULL,
    provider     text NOT NULL,
    account      text NOT NULL,
    payee        text NOT NULL,
    expires_at   timestamptz NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'approved', 'declined')),
    reason       text,
    settled_amount bigint,
    in_settlement boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL,
    decided_at   timestamptz
);
CREATE INDEX rtp_decided ON rtp (decided_at) WHERE status = 'approved';

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    rtp_id       text NOT NULL REFERENCES rtp (rtp_id),
    payload      jsonb NOT NULL,
    attempts     int NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL,
    delivered_at timestamptz,
    last_error   text
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE delivered_at IS NULL;

CREATE TABLE behaviour (
    id       int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    config   jsonb NOT NULL
);
INSERT INTO behaviour (config) VALUES ('{"default": "approve", "accounts": {}}');
