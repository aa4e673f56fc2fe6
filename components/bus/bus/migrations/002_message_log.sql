-- Tamper-evident message log: one hash chain per bus node, sealed periodically with a signature.
CREATE TABLE message_log (
    chain        text NOT NULL,
    seq          bigint NOT NULL,
    ts           timestamptz NOT NULL,
    record       jsonb NOT NULL,      -- metadata: ids, client, service, status, duration, body hashes
    body         bytea,               -- the request body, only when body logging is on
    prev_hash    text NOT NULL,
    hash         text NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE TABLE log_seals (
    chain        text NOT NULL,
    seq          bigint NOT NULL,     -- the record the seal covers up to (inclusive)
    hash         text NOT NULL,       -- that record's hash
    sealed_at    timestamptz NOT NULL DEFAULT now(),
    signature    bytea NOT NULL,
    certificate  text NOT NULL,       -- PEM of the signing (CA-issued) certificate
    PRIMARY KEY (chain, seq)
);

-- Asynchronous messages: state as seen by the bus (the payload itself lives in JetStream).
CREATE TABLE async_messages (
    message_id   text PRIMARY KEY,
    client       text NOT NULL,
    service      text NOT NULL,
    state        text NOT NULL CHECK (state IN ('queued', 'retrying', 'delivered', 'dead')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
