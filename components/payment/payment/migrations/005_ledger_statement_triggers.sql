-- The ledger's triggers per statement instead of per entry (same invariants, a fraction of the work): kept balances
-- are updated once per account per statement from the statement's transition table, and each ledger transaction's
-- balance is checked once (deferred to COMMIT, as before) instead of once per entry.
DROP TRIGGER entries_apply ON entries;
DROP TRIGGER entries_balanced ON entries;
DROP FUNCTION entries_apply();
DROP FUNCTION entries_balanced();

CREATE FUNCTION entries_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts a SET balance = a.balance + s.total
    FROM (SELECT account, sum(amount) AS total FROM new_entries GROUP BY account) s
    WHERE a.id = s.account AND a.tracked;
    -- entries added to a ledger transaction created by an earlier database transaction: that ledger transaction
    -- must balance now (those created by this one are checked at COMMIT by ledger_tx_balanced)
    PERFORM 1 FROM entries e
    WHERE e.tx_id IN (SELECT n.tx_id FROM new_entries n JOIN ledger_tx t ON t.id = n.tx_id
                      WHERE t.xmin <> pg_current_xact_id()::xid)
    GROUP BY e.tx_id HAVING sum(e.amount) <> 0;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction does not balance' USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER entries_apply AFTER INSERT ON entries REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION entries_apply();

CREATE FUNCTION ledger_tx_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total bigint;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO total FROM entries WHERE tx_id = NEW.id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.id, total USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_tx_balanced AFTER INSERT ON ledger_tx DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_tx_balanced();
