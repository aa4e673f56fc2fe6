-- Double-entry ledger: integer minor units (SYP), append-only entries, every ledger transaction sums to zero.
-- Sign convention: amount > 0 debits the account, amount < 0 credits it.
CREATE TABLE accounts (
    id           text PRIMARY KEY,
    normal       text NOT NULL CHECK (normal IN ('debit', 'credit')),
    no_overdraft boolean NOT NULL DEFAULT false,
    tracked      boolean NOT NULL DEFAULT true,   -- balance kept in this row (untracked = shared hot accounts)
    balance      bigint NOT NULL DEFAULT 0,
    CONSTRAINT no_overdraft CHECK (NOT no_overdraft OR (normal = 'debit' AND balance >= 0)
                                   OR (normal = 'credit' AND balance <= 0))
);

CREATE TABLE ledger_tx (
    id         bigserial PRIMARY KEY,
    order_id   text,
    kind       text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX ledger_tx_order ON ledger_tx (order_id);

CREATE TABLE entries (
    id      bigserial PRIMARY KEY,
    tx_id   bigint NOT NULL REFERENCES ledger_tx (id),
    account text NOT NULL REFERENCES accounts (id),
    amount  bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX entries_tx ON entries (tx_id);
CREATE INDEX entries_account ON entries (account);

CREATE FUNCTION entries_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET balance = balance + NEW.amount WHERE id = NEW.account AND tracked;
    RETURN NEW;
END $$;
CREATE TRIGGER entries_apply AFTER INSERT ON entries FOR EACH ROW EXECUTE FUNCTION entries_apply();

CREATE FUNCTION entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total bigint;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO total FROM entries WHERE tx_id = NEW.tx_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.tx_id, total USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER entries_balanced AFTER INSERT ON entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION entries_balanced();

CREATE FUNCTION entries_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only';
END $$;
CREATE TRIGGER entries_immutable BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION entries_immutable();

INSERT INTO accounts (id, normal, no_overdraft, tracked) VALUES
    ('switch:pending', 'debit', false, false),      -- requested from payers through the switch, not yet confirmed
    ('switch:receivable', 'debit', false, false);   -- confirmed by the switch, to be settled

-- Catalogue of channels and billers (configurable through the admin API).
CREATE TABLE channels (
    id      text PRIMARY KEY,
    kind    text NOT NULL CHECK (kind IN ('wallet', 'bank')),
    name    text NOT NULL,
    enabled boolean NOT NULL DEFAULT true
);
INSERT INTO channels (id, kind, name) VALUES
    ('syriatel-cash', 'wallet', 'Syriatel Cash'),
    ('mtn-cash', 'wallet', 'MTN Cash'),
    ('cbs', 'bank', 'Commercial Bank of Syria'),
    ('bemo', 'bank', 'Bank BEMO Saudi Fransi');

CREATE TABLE billers (
    id      text PRIMARY KEY,
    kind    text NOT NULL CHECK (kind IN ('electricity', 'water', 'telecom')),
    name    text NOT NULL,
    prefix  text NOT NULL UNIQUE CHECK (prefix ~ '^[A-Z]{2,6}$')
);
INSERT INTO billers (id, kind, name, prefix) VALUES
    ('electricity', 'electricity', 'Public Establishment for Electricity', 'EL'),
    ('water', 'water', 'Water Supply and Sewerage', 'WA'),
    ('telecom', 'telecom', 'Syrian Telecom', 'TE');

CREATE TABLE bills (
    reference  text PRIMARY KEY,
    biller_id  text NOT NULL REFERENCES billers (id),
    customer   text NOT NULL,
    amount_due bigint NOT NULL CHECK (amount_due > 0),
    due_date   date,
    paid_order text
);

CREATE TABLE orders (
    id            text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('fee', 'bill')),
    service_id    text,
    bill_reference text REFERENCES bills (reference),
    payee         text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    currency      text NOT NULL,
    channel       text NOT NULL REFERENCES channels (id),
    payer_account text NOT NULL,
    status        text NOT NULL CHECK (status IN ('reserved', 'pending', 'paid', 'declined', 'expired', 'cancelled',
                                                   'failed')),
    reason        text,
    switch_ref    text,
    late_status   text,          -- a switch decision that came after the order was closed (reconciliation flags it)
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    closed_at     timestamptz
);
CREATE INDEX orders_open ON orders (expires_at) WHERE status IN ('reserved', 'pending');
CREATE INDEX orders_closed ON orders (closed_at) WHERE status = 'paid';
CREATE UNIQUE INDEX orders_one_per_bill ON orders (bill_reference)
    WHERE bill_reference IS NOT NULL AND status IN ('reserved', 'pending', 'paid');

CREATE TABLE idempotency (
    scope      text NOT NULL,
    key        text NOT NULL,
    body_hash  text NOT NULL,
    status     int,
    response   text,              -- the JSON exactly as first answered
    created_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE callbacks (
    event_id    text PRIMARY KEY,
    rtp_id      text NOT NULL,
    payload     jsonb NOT NULL,
    result      text NOT NULL,
    received_at timestamptz NOT NULL
);

CREATE TABLE receipts (
    order_id  text PRIMARY KEY REFERENCES orders (id),
    payload   text NOT NULL,      -- canonical JSON, exactly the signed bytes
    signature text NOT NULL,      -- base64
    algorithm text NOT NULL,
    chain     text[] NOT NULL     -- PEM, leaf first
);

CREATE TABLE receipt_signer (      -- only for the development signer (no CA configured)
    id        int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    key_pem   text NOT NULL,
    chain     text[] NOT NULL
);

CREATE TABLE reconciliations (
    id         bigserial PRIMARY KEY,
    day        date NOT NULL,
    created_at timestamptz NOT NULL,
    matched    int NOT NULL,
    mismatches jsonb NOT NULL
);
