-- Fee order outcomes notified by the payment gateway (POST /api/payments/notifications, portal/payments.py).
-- payment_events: every distinct notification once, keyed by (order, event): a re-delivery is a no-op.
-- payment_orders: each order's latest known state, what the API answers and the per-service counts read.
-- No foreign key to services: the money has moved whatever the catalog says now (a service withdrawn or unknown
-- since the order was made is still recorded; service_known says whether the catalog had it on arrival).

CREATE TABLE payment_events (
  order_id text NOT NULL CHECK (length(order_id) BETWEEN 1 AND 64),
  event text NOT NULL CHECK (length(event) BETWEEN 1 AND 64),
  payload jsonb NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (order_id, event)
);

CREATE TABLE payment_orders (
  order_id text PRIMARY KEY CHECK (length(order_id) BETWEEN 1 AND 64),
  service_id text NOT NULL,
  service_known boolean NOT NULL,
  status text NOT NULL,
  amount bigint NOT NULL CHECK (amount >= 0),
  currency text NOT NULL,
  switch_ref text,
  receipt_id text,
  at timestamptz NOT NULL,                      -- when the gateway reached this state
  updated_at timestamptz NOT NULL DEFAULT now()  -- when the portal learnt it
);

CREATE INDEX payment_orders_paid_by_service ON payment_orders (service_id) WHERE status = 'paid';
