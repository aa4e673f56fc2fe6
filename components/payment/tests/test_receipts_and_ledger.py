"""Receipt signing (local chain and the CA path), the ledger's database guarantees and its properties."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from govcloud_common import db
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payment import ledger
from payment.ca_signer import signer_from_ca
from payment.fees import CachedFeeSource, FeeSourceError, PortalFeeSource, UnknownService
from payment.receipts import InvalidReceipt, issue, local_chain, make_receipt, verify_receipt

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_receipt_verifies_offline_and_rejects_tampering():
    signer, root = local_chain()
    doc = make_receipt(signer, {"order_id": "PO1", "amount": 1500, "currency": "SYP"})
    assert verify_receipt(doc, pem(root)) == {"order_id": "PO1", "amount": 1500, "currency": "SYP"}
    assert verify_receipt({**doc, "chain": doc["chain"][:2]}, pem(root))["amount"] == 1500  # anchor optional
    with pytest.raises(InvalidReceipt, match="signature"):
        verify_receipt({**doc, "payload": doc["payload"].replace("1500", "15000")}, pem(root))
    with pytest.raises(InvalidReceipt):
        verify_receipt({**doc, "chain": doc["chain"][:1]}, pem(root))  # intermediate missing
    with pytest.raises(InvalidReceipt, match="not valid"):
        verify_receipt(doc, pem(root), at=datetime.now(UTC) + timedelta(days=3650))
    with pytest.raises(InvalidReceipt, match="malformed"):
        verify_receipt({"payload": "{}"}, pem(root))


def test_verify_receipt_command(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    signer, root = local_chain()
    doc = make_receipt(signer, {"order_id": "PO7", "amount": 900})
    (tmp_path / "r.json").write_text(json.dumps(doc))
    (tmp_path / "root.pem").write_text(pem(root))
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin"}
    ok = subprocess.run([sys.executable, "-m", "payment.verify_receipt", str(tmp_path / "r.json"),
                         str(tmp_path / "root.pem")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and '"amount": 900' in ok.stdout
    (tmp_path / "r.json").write_text(json.dumps({**doc, "payload": doc["payload"].replace("900", "901")}))
    bad = subprocess.run([sys.executable, "-m", "payment.verify_receipt", str(tmp_path / "r.json"),
                          str(tmp_path / "root.pem")], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and bad.stdout.startswith("INVALID")


def test_a_leaf_cannot_act_as_an_issuer():
    signer, root = local_chain()
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = signer.key
    assert isinstance(leaf_key, ec.EllipticCurvePrivateKey)
    rogue = issue("rogue", rogue_key, "govcloud receipts signer", leaf_key)  # "issued" by the non-CA leaf
    from payment.receipts import KeySigner
    doc = make_receipt(KeySigner(rogue_key, [rogue, *signer.chain]), {"x": 1})
    with pytest.raises(InvalidReceipt, match="not a CA"):
        verify_receipt(doc, pem(root))


def test_ca_signer_gets_its_certificate_from_the_platform_ca_api():
    """The real path, against a fake CA speaking the CA component's API (POST /api/v1/certificates)."""
    root_key, issuing_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = issue("fake root", root_key, ca=True)
    issuing = issue("fake platform CA", issuing_key, "fake root", root_key, ca=True)
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.update(body, auth=request.headers["authorization"])
        csr = x509.load_pem_x509_csr(body["csr"].encode())
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(issuing.subject)
                .public_key(csr.public_key()).serial_number(42).not_valid_before(now - timedelta(minutes=1))
                .not_valid_after(now + timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(issuing_key, hashes.SHA256()))
        return httpx.Response(201, json={"certificate": pem(cert), "chain": [pem(issuing), pem(root)],
                                         "serial": "2A"})

    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://ca") as client:
        signer = signer_from_ca("ca-admin", client=client)
    assert seen["profile"] == "document-signing" and seen["auth"] == "Bearer ca-admin"
    fields = verify_receipt(make_receipt(signer, {"order_id": "PO9"}), pem(root))
    assert fields == {"order_id": "PO9"}


@pytest.mark.asyncio
async def test_portal_fee_source_rejects_bad_answers():
    answers = {"float": (200, {"amount": 12.5}), "negative": (200, {"amount": -1}), "bool": (200, {"amount": True}),
               "eur": (200, {"amount": 5, "currency": "EUR"}), "down": (500, {}), "gone": (404, {}),
               "ok": (200, {"amount": 700, "currency": "SYP", "name": "x"})}

    def handler(request: httpx.Request) -> httpx.Response:
        status, doc = answers[request.url.path.split("/")[3]]
        return httpx.Response(status, json=doc)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://portal") as client:
        src = PortalFeeSource(client)
        assert (await src.fee("ok")).amount == 700
        with pytest.raises(UnknownService):
            await src.fee("gone")
        for bad in ("float", "negative", "bool", "eur", "down"):
            with pytest.raises(FeeSourceError):
                await src.fee(bad)


@pytest.mark.asyncio
async def test_fee_cache_keeps_fees_for_its_ttl_only():
    calls: list[str] = []
    fees = {"a": 100}

    def handler(request: httpx.Request) -> httpx.Response:
        sid = request.url.path.split("/")[3]
        calls.append(sid)
        return httpx.Response(200, json={"amount": fees[sid]}) if sid in fees else httpx.Response(404)

    t = [0.0]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://portal") as client:
        src = CachedFeeSource(PortalFeeSource(client), ttl_s=60, clock=lambda: t[0])
        assert (await src.fee("a")).amount == 100
        fees["a"] = 150
        t[0] = 59
        assert (await src.fee("a")).amount == 100
        t[0] = 60
        assert (await src.fee("a")).amount == 150
        for _ in range(2):
            with pytest.raises(UnknownService):
                await src.fee("b")
    assert calls == ["a", "a", "b", "b"]


# -- the ledger -----------------------------------------------------------------------------------------------------

def test_database_refuses_unbalanced_and_edited_entries(pg_dsn):
    db.migrate("payment", conninfo=pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        tx = conn.execute("INSERT INTO ledger_tx (kind, created_at) VALUES ('t', now()) RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO entries (tx_id, account, amount) VALUES (%s, 'switch:pending', 5)", (tx,))
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            conn.commit()
    with psycopg.connect(pg_dsn) as conn:
        tx = conn.execute("INSERT INTO ledger_tx (kind, created_at) VALUES ('t', now()) RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO entries (tx_id, account, amount) VALUES (%s, 'switch:pending', 5),"
                     " (%s, 'switch:receivable', -5)", (tx, tx))
        conn.commit()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE entries SET amount = 6 WHERE tx_id = %s", (tx,))
        conn.rollback()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM entries WHERE tx_id = %s", (tx,))


def test_entries_added_to_an_older_ledger_transaction_must_balance_at_once(pg_dsn):
    """Migration 005: balances are kept per statement, each ledger transaction is checked once at COMMIT - and entries
    added later to a ledger transaction committed before are checked when they are written."""
    db.migrate("payment", conninfo=pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO accounts (id, normal, no_overdraft) VALUES ('order:x', 'credit', true)")
        tx = conn.execute("INSERT INTO ledger_tx (kind, created_at) VALUES ('t', now()) RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO entries (tx_id, account, amount) VALUES (%s, 'switch:pending', 7),"
                     " (%s, 'order:x', -3), (%s, 'order:x', -4)", (tx, tx, tx))
        conn.commit()
        assert conn.execute("SELECT balance FROM accounts WHERE id = 'order:x'").fetchone() == (-7,)
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            conn.execute("INSERT INTO entries (tx_id, account, amount) VALUES (%s, 'switch:pending', 1)", (tx,))
        conn.rollback()
        conn.execute("INSERT INTO entries (tx_id, account, amount) VALUES (%s, 'switch:pending', 2),"
                     " (%s, 'order:x', -2)", (tx, tx))  # balanced additions are accepted
        conn.commit()
        assert conn.execute("SELECT balance FROM accounts WHERE id = 'order:x'").fetchone() == (-9,)
        with pytest.raises(psycopg.errors.CheckViolation, match="no_overdraft"):  # the account's final state counts
            conn.execute("INSERT INTO entries (tx_id, account, amount) VALUES (%s, 'order:x', 10),"
                         " (%s, 'switch:pending', -10)", (tx, tx))


ops = st.lists(st.tuples(st.sampled_from(["reserve", "commit", "abort"]), st.integers(0, 5),
                         st.integers(1, 10**12)), min_size=1, max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_ledger_invariants_hold_for_any_sequence_of_operations(pg_dsn, steps):
    """Each transaction sums to zero, kept balances equal their entries, no-overdraft accounts never overdraw:
    a second commit/abort of the same order is refused by the database, not just by the caller."""
    db.migrate("payment", conninfo=pg_dsn)

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            await conn.execute("TRUNCATE entries, ledger_tx, accounts CASCADE")
            await conn.execute("INSERT INTO accounts (id, normal, no_overdraft, tracked) VALUES ('switch:pending',"
                               " 'debit', false, false), ('switch:receivable', 'debit', false, false)")
            await conn.commit()
            model: dict[str, tuple[str, int]] = {}  # order -> (state, amount)
            for op, n, amount in steps:
                oid = f"o{n}"
                state, amt = model.get(oid, ("new", amount))
                if op == "reserve":
                    if state != "new":
                        continue  # an order is reserved once (its id comes from its idempotency key)
                    async with conn.transaction():
                        await ledger.reserve(conn, oid, amount, NOW)
                    model[oid] = ("reserved", amount)
                else:
                    try:
                        async with conn.transaction():
                            if op == "commit":
                                await ledger.commit(conn, oid, f"p{n % 2}", amt, NOW)
                            else:
                                await ledger.abort(conn, oid, amt, NOW)
                        accepted = True
                    except (psycopg.errors.CheckViolation, psycopg.errors.ForeignKeyViolation):
                        accepted = False
                    assert accepted == (state == "reserved"), f"{op} of a {state} order: accepted={accepted}"
                    if accepted:
                        model[oid] = ("paid" if op == "commit" else "aborted", amt)
                check = await ledger.check(conn)
                assert check["balanced"], check
            open_amount = sum(a for s, a in model.values() if s == "reserved")
            paid = sum(a for s, a in model.values() if s == "paid")
            assert await ledger.balance(conn, ledger.PENDING) == open_amount
            assert await ledger.balance(conn, ledger.RECEIVABLE) == paid
            payees = await ledger.balance(conn, "payee:p0") + await ledger.balance(conn, "payee:p1")
            assert payees == -paid

    asyncio.run(run())


@pytest.mark.asyncio
async def test_the_one_statement_paid_path_writes_what_the_general_path_writes(system):
    fast = (await system.fee_order("k-fast")).json()
    other = (await system.fee_order("k-other", payer_account="0944555000")).json()
    system.gw.recent.pop(other["id"])  # as if created by another worker or before a restart: read, then one statement
    assert fast["id"] in system.gw.recent
    await system.dispatch()
    assert fast["id"] not in system.gw.recent
    general = (await system.fee_order("k-general", payer_account="0944555666")).json()
    system.gw.fast_paid = False
    await system.dispatch()
    system.gw.fast_paid = True
    for o in (fast, other, general):
        assert (await system.pay.get(f"/api/orders/{o['id']}")).json()["status"] == "paid"
        receipt = (await system.pay.get(f"/api/orders/{o['id']}/receipt")).json()
        fields = verify_receipt(receipt, system.root_pem)
        assert fields["order_id"] == o["id"] and fields["amount"] == o["amount"]
        assert fields["payer_account"].endswith(o["payer_account"][-4:])

    def shape(oid: str) -> list[tuple]:
        return system.sql(
            "SELECT t.kind, replace(e.account, %s, 'ORDER'), e.amount FROM ledger_tx t JOIN entries e ON e.tx_id = t.id"
            " WHERE t.order_id = %s ORDER BY t.id, e.id", oid, oid)
    assert shape(fast["id"]) == shape(general["id"]) == shape(other["id"])
    notes = system.sql("SELECT order_id, target, event, payload - 'order_id' - 'switch_ref' - 'receipt_id'"
                       " FROM notifications ORDER BY id")
    assert [(n[1], n[2], n[3]) for n in notes if n[0] == fast["id"]] == \
           [(n[1], n[2], n[3]) for n in notes if n[0] == general["id"]]
    assert [(n[1], n[2], n[3]) for n in notes if n[0] == other["id"]] == \
           [(n[1], n[2], n[3]) for n in notes if n[0] == general["id"]]
    assert system.sql("SELECT result FROM callbacks") == [("paid",)] * 3
    # a replayed approval changes nothing on either path
    for o in (fast, other, general):
        payload = {"event_id": f"EV-replay-{o['id']}", "rtp_id": o["id"], "switch_ref": o["switch_ref"],
                   "status": "approved", "amount": o["amount"], "currency": "SYP", "reason": None,
                   "decided_at": system.clock().isoformat()}
        body, headers = system.signed(payload)
        assert (await system.pay.post("/api/switch/callbacks", content=body, headers=headers)).json()["result"] \
            == "ignored"
    await system.ledger_balanced()
