-- when the gateway last asked the switch about a pending order whose callback is overdue
ALTER TABLE orders ADD COLUMN checked_at timestamptz;
