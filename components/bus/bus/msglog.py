"""Tamper-evident message log: every exchange as a record in a per-node hash chain, sealed with signatures.

``hash(n) = sha256(prev_hash(n) | seq | canonical JSON of the record)``; the first record's ``prev_hash`` is 64
zeros. A seal signs ``chain:seq:hash`` with the bus's CA-issued key. Verification recomputes every hash, checks
the links and the sequence (a removed record leaves a gap or a broken link, an inserted or altered one breaks its
hash), checks stored bodies against their hashes and every seal's signature and position.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from govcloud_common.x509sig import issued_by, signed
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("bus.msglog")
GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev: str, seq: int, record: dict[str, Any]) -> str:
    return hashlib.sha256(f"{prev}|{seq}|{canonical(record)}".encode()).hexdigest()


def seal_payload(chain: str, seq: int, digest: str) -> bytes:
    return f"govcloud-bus-log-seal:{chain}:{seq}:{digest}".encode()


@dataclass
class Signer:
    key: Any  # EC or RSA private key
    certificate_pem: str

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> Signer:
        return cls(serialization.load_pem_private_key(key_pem, None), cert_pem.decode())

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        raise TypeError(f"unsupported key type {type(self.key).__name__}")


def verify_signature(cert: x509.Certificate, signature: bytes, data: bytes) -> bool:
    return signed(cert, signature, data, hashes.SHA256())


@dataclass
class MessageLog:
    pool: AsyncConnectionPool
    chain: str
    store_bodies: bool = False
    signer: Signer | None = None
    flush_interval: float = 0.2
    _seq: int = 0
    _head: str = GENESIS
    _pending: list[tuple[Any, ...]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT seq, hash FROM message_log WHERE chain = %s ORDER BY seq DESC LIMIT 1", (self.chain,)
            )).fetchone()
        if row:
            self._seq, self._head = int(row[0]), str(row[1])
        self._task = asyncio.create_task(self._run(), name="msglog-flush")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    def append(self, record: dict[str, Any], body: bytes | None = None) -> tuple[int, str]:
        """Chain a record now (no await: the order is the event loop's); it is written by the next flush."""
        ts = datetime.now(UTC)
        record = {**record, "ts": ts.isoformat(timespec="microseconds")}
        if body is not None:
            record.setdefault("reqSha256", hashlib.sha256(body).hexdigest())
        self._seq += 1
        digest = chain_hash(self._head, self._seq, record)
        self._pending.append((self.chain, self._seq, ts, json.dumps(record),
                              body if (self.store_bodies and body is not None) else None, self._head, digest))
        self._head = digest
        if len(self._pending) >= 500:
            self._wake.set()
        return self._seq, digest

    @property
    def head(self) -> tuple[int, str]:
        return self._seq, self._head

    async def flush(self) -> int:
        async with self._lock:
            rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                async with self.pool.connection() as conn, conn.cursor() as cur, cur.copy(
                        "COPY message_log (chain, seq, ts, record, body, prev_hash, hash) FROM STDIN") as copy:
                    for row in rows:
                        await copy.write_row(row)
            except Exception:
                self._pending[:0] = rows  # keep them, in order, for the next attempt
                raise
            return len(rows)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # flush every interval, or at once when 500 are pending
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("message log flush failed; retrying")

    async def seal(self) -> dict[str, Any] | None:
        if self.signer is None:
            raise RuntimeError("no signing key configured for sealing the message log")
        await self.flush()
        seq, digest = self.head
        if seq == 0:
            return None
        signature = self.signer.sign(seal_payload(self.chain, seq, digest))
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO log_seals (chain, seq, hash, signature, certificate) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING", (self.chain, seq, digest, signature, self.signer.certificate_pem))
        return {"chain": self.chain, "seq": seq, "hash": digest}


def verify_log(conninfo: str = "", trusted: list[x509.Certificate] | None = None) -> dict[str, Any]:
    """Walk every chain; report each altered, inserted or removed record and each bad seal."""
    problems: list[str] = []
    counts: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn:
        chains = [r[0] for r in conn.execute("SELECT DISTINCT chain FROM message_log ORDER BY 1")]
        seals = conn.execute(
            "SELECT chain, seq, hash, signature, certificate FROM log_seals ORDER BY chain, seq").fetchall()
        heads: dict[str, dict[int, str]] = {}
        for chain in chains:
            expected_seq, prev = 1, GENESIS
            hashes_at: dict[int, str] = {}
            with conn.cursor(name=f"verify_{abs(hash(chain))}") as cur:
                cur.execute("SELECT seq, record, body, prev_hash, hash FROM message_log WHERE chain = %s ORDER BY seq",
                            (chain,))
                for seq, record, body, prev_hash, digest in cur:
                    where = f"{chain}#{seq}"
                    if seq != expected_seq:
                        problems.append(f"{where}: sequence jumps from {expected_seq - 1} to {seq} "
                                        f"({seq - expected_seq} record(s) removed)")
                    if prev_hash != prev:
                        problems.append(f"{where}: prev_hash does not link to the previous record "
                                        "(record removed or inserted before it)")
                    if chain_hash(prev_hash, seq, record) != digest:
                        problems.append(f"{where}: content does not match its hash (record altered)")
                    if body is not None and record.get("reqSha256") != hashlib.sha256(bytes(body)).hexdigest():
                        problems.append(f"{where}: stored body does not match its hash (body altered)")
                    hashes_at[seq] = digest
                    prev, expected_seq = digest, seq + 1
            counts[chain] = len(hashes_at)
            heads[chain] = hashes_at
    sealed = 0
    for chain, seq, digest, signature, cert_pem in seals:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        if trusted is not None and not any(issued_by(cert, ca) for ca in trusted):
            problems.append(f"seal {chain}#{seq}: certificate {cert.subject.rfc4514_string()} is not from a trusted CA")
        if not verify_signature(cert, bytes(signature), seal_payload(chain, seq, digest)):
            problems.append(f"seal {chain}#{seq}: signature invalid (seal altered)")
        actual = heads.get(chain, {}).get(seq)
        if actual is None:
            problems.append(f"seal {chain}#{seq}: sealed record is missing (records removed)")
        elif actual != digest:
            problems.append(f"seal {chain}#{seq}: sealed hash differs from the record's (chain rewritten)")
        sealed += 1
    return {"ok": not problems, "records": counts, "seals": sealed, "problems": problems}
