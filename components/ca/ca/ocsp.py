"""Pre-produced OCSP responses (RFC 6960 §2.4, RFC 5019): signed ahead of time, served as stored bytes.

* **Produce**: a signed, nonce-less response per (issuing CA, serial, CertID hash: SHA-1 and SHA-256) is written
  to ``govcloud_ca_ocsp_response`` when a certificate is issued (django-ca's post_issue_cert, so every signing
  path is covered; batched on a thread, milliseconds later) or revoked (post_revoke_cert, synchronously), and
  re-signed by the maintenance job once half its validity (the CA's ``ocsp_response_validity``, 1 h) has passed. Signed by the CA's OCSP delegate
  (responder) certificate, exactly as django-ca's live responder does.
* **Serve**: :class:`Front`, a plain ASGI layer in front of the application, parses the request
  (``load_der_ocsp_request``), checks the CertID's issuer hashes against the CA of the URL and answers from an
  in-process LRU, else from the table (one indexed read), else by signing now if the certificate exists. A serial
  this CA never issued gets ``unauthorized`` (RFC 5019 §2.2.3), a foreign issuer too. Requests with a nonce (or
  another hash algorithm) go to django-ca's live responder. RFC 5019 GET (``/ocsp/<ca>/cert/<base64>``) and POST.
* **Revocation is immediate on every worker**: the revocation re-signs the row and sends ``NOTIFY
  govcloud_ca_ocsp`` in the same transaction; each worker process listens (one PostgreSQL session per process,
  ``application_name=govcloud-ca-ocsp-listener``), evicts the entry and acknowledges. Our revoke API waits for
  the acknowledgements of every listening session (:func:`barrier`). A worker whose listener is not connected
  serves from the table only (no LRU), so a lost notification cannot leave a stale "good" in memory.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import queue
import secrets
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from cryptography.x509.oid import OCSPExtensionOID
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from prometheus_client import Counter

log = logging.getLogger("ca.ocsp")
CONTENT_TYPE = "application/ocsp-response"
CHANNEL = "govcloud_ca_ocsp"
ACK_CHANNEL = "govcloud_ca_ocsp_ack"
LISTENER_NAME = "govcloud-ca-ocsp-listener"
ALGORITHMS: dict[str, hashes.HashAlgorithm] = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}
# produced at issuance: the SHA-1 CertID RFC 5019 requires of clients (openssl's default); a SHA-256 one is signed
# on its first request and kept fresh from then on
EAGER = ("sha1",)
MAX_REQUEST = 16 * 1024
RESIGN_MARGIN = timedelta(minutes=5)  # a stored response closer than this to nextUpdate is re-signed on read

SERVED = Counter("ca_ocsp_responses_total", "OCSP responses served", ["source"])
_served = {s: SERVED.labels(s) for s in ("memory", "table", "signed", "live", "unauthorized", "malformed")}

_MALFORMED = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
    Encoding.DER)
_UNAUTHORIZED = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
    Encoding.DER)


def _hex(serial: int) -> str:
    return f"{serial:X}"  # django-ca's serial form: upper-case hex, no leading zeros


# --- issuers ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issuer:
    ca_id: int
    serial: str
    hashes: dict[str, tuple[bytes, bytes]]  # algorithm -> (issuerNameHash, issuerKeyHash)
    validity: timedelta


_issuers: dict[str, Issuer] = {}


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _key_bits(public: Any) -> bytes:
    """The subjectPublicKey BIT STRING's contents (what the CertID's issuerKeyHash covers)."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    if isinstance(public, rsa.RSAPublicKey):
        return public.public_bytes(Encoding.DER, PublicFormat.PKCS1)
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[no-any-return]


def issuer(ca: Any) -> Issuer:
    known = _issuers.get(ca.serial)
    if known is None:
        cert = ca.pub.loaded
        name_der, key_bits = cert.subject.public_bytes(), _key_bits(cert.public_key())
        pairs = {}
        for name, alg in ALGORITHMS.items():  # RFC 6960 CertID: hashes of the issuer's DN and subjectPublicKey
            pairs[name] = (_digest(alg, name_der), _digest(alg, key_bits))
        known = Issuer(ca.pk, ca.serial, pairs, timedelta(seconds=ca.ocsp_response_validity))
        _issuers[ca.serial] = known
    return known


def _issuer_by_serial(ca_serial: str) -> Issuer | None:
    from django_ca.models import CertificateAuthority

    if ca_serial not in _issuers:
        ca = CertificateAuthority.objects.filter(serial=ca_serial).first()
        if ca is None:
            return None
        issuer(ca)
    return _issuers[ca_serial]


# --- producing -------------------------------------------------------------------------------------------
class _Signer:
    """One CA's responder certificate and key, loaded once for a batch."""

    def __init__(self, ca: Any) -> None:
        self.ca = ca
        self.issuer = issuer(ca)
        try:
            pem = ca.ocsp_key_backend_options["certificate"]["pem"]
        except (KeyError, TypeError):
            raise ValueError(f"{ca.name}: no OCSP responder certificate (run maintenance)") from None
        self.responder = x509.load_pem_x509_certificate(pem.encode("ascii"))

    def sign(self, cert: Any, algorithm: str, now: datetime) -> tuple[bytes, datetime]:
        name_hash, key_hash = self.issuer.hashes[algorithm]
        next_update = now + self.issuer.validity
        revoked = bool(cert.revoked)
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=name_hash, issuer_key_hash=key_hash, serial_number=int(cert.serial, 16),
            algorithm=ALGORITHMS[algorithm],
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now, next_update=next_update,
            revocation_time=cert.get_revocation_time() if revoked else None,
            revocation_reason=cert.get_revocation_reason() if revoked else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder).certificates([self.responder])
        signed = self.ca.ocsp_key_backend.sign_ocsp_response(self.ca, builder, self.responder.signature_hash_algorithm)
        return signed.public_bytes(Encoding.DER), next_update

    def rows(self, cert: Any, now: datetime, algorithms: Iterable[str] = ALGORITHMS) -> list[Any]:
        from ca.models import OcspResponse

        out = []
        for algorithm in algorithms:
            der, next_update = self.sign(cert, algorithm, now)
            out.append(OcspResponse(ca_serial=self.ca.serial, serial=cert.serial, algorithm=algorithm,
                                    status="revoked" if cert.revoked else "good", der=der, this_update=now,
                                    next_update=next_update))
        return out


_UPSERT = ("INSERT INTO govcloud_ca_ocsp_response (ca_serial, serial, algorithm, status, der, this_update, "
           "next_update) VALUES {} ON CONFLICT (ca_serial, serial, algorithm) DO UPDATE SET status = EXCLUDED.status, "
           "der = EXCLUDED.der, this_update = EXCLUDED.this_update, next_update = EXCLUDED.next_update "
           # never over a newer answer: thisUpdate is taken before the certificate's state was read, so a response
           # signed from a state read before a revocation cannot replace the revocation's own
           "WHERE govcloud_ca_ocsp_response.this_update < EXCLUDED.this_update")


_signers: dict[tuple[str, str], _Signer] = {}


def _signer(ca: Any) -> _Signer:
    """The CA's signer, reused while its responder certificate stays the same."""
    pem = ((ca.ocsp_key_backend_options or {}).get("certificate") or {}).get("pem", "")
    signer = _signers.get((ca.serial, pem))
    if signer is None:
        signer = _signers[(ca.serial, pem)] = _Signer(ca)
    return signer


def _store(rows: list[Any], notify: str | None = None) -> None:
    """One statement (one round trip, atomic on its own): the upsert and, with ``notify``, the NOTIFY payload."""
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for r in rows:
        params += [r.ca_serial, r.serial, r.algorithm, r.status, r.der, r.this_update, r.next_update]
    sql = _UPSERT.format(values)
    if notify:
        sql = f"WITH up AS ({sql} RETURNING 1) SELECT pg_notify(%s, %s) FROM (SELECT count(*) FROM up) AS n"
        params += [CHANNEL, notify]
    with connection.cursor() as cur:
        cur.execute(sql, params)


def produce(cert: Any, notify: bool = False) -> str | None:
    """(Re-)sign and store this certificate's responses; with ``notify`` evict it on every worker at commit.

    Returns the notification token (for :func:`barrier`)."""
    rows = _signer(cert.ca).rows(cert, datetime.now(tz=UTC))
    token = secrets.token_hex(8) if notify else None
    _store(rows, f"{cert.ca.serial}:{cert.serial}:{token}" if token else None)
    return token


class Producer:
    """Signs and stores the responses of newly issued certificates on a thread of its own, many per statement:
    issuance does not wait for it. Until a row is written, a request for that certificate signs it on the spot
    (:func:`lookup`), so the answer is never missing, only not yet pre-produced."""

    def __init__(self, batch: int = 250) -> None:
        self.batch = batch
        self.queue: queue.Queue[Any] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, cert: Any) -> None:
        """``cert`` as just issued; its responses' thisUpdate is now (see _UPSERT)."""
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="ocsp-producer", daemon=True)
                self.thread.start()
        self.queue.put((cert, datetime.now(tz=UTC)))

    def flush(self) -> None:
        """Until everything submitted so far is stored (or failed and logged)."""
        self.queue.join()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.batch:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                close_old_connections()
                rows: list[Any] = []
                for cert, issued_at in batch:
                    try:
                        rows += _signer(cert.ca).rows(cert, issued_at, EAGER)
                    except ValueError as exc:  # no responder certificate yet (the CA's first delegate)
                        log.info("OCSP responses not pre-produced: %s", exc)
                if rows:
                    _store(rows)
            except Exception:
                log.exception("pre-producing OCSP responses failed (they are signed on first request instead)")
            finally:
                for _ in batch:
                    self.queue.task_done()


producer = Producer()


def on_issue(cert: Any, **_: Any) -> None:
    """post_issue_cert: queued once the certificate is committed (never a "good" for a rolled-back issuance)."""
    transaction.on_commit(lambda: producer.submit(cert))


def on_revoke(cert: Any, **_: Any) -> None:
    """Re-sign at once; if that fails, delete the stored "good" so nobody can serve it, and evict it anyway."""
    try:
        cert._govcloud_ocsp_token = produce(cert, notify=True)
    except Exception:
        log.exception("re-signing OCSP responses after revocation failed", extra={"fields": {"serial": cert.serial}})
        from ca.models import OcspResponse

        token = secrets.token_hex(8)
        with transaction.atomic():
            OcspResponse.objects.filter(ca_serial=cert.ca.serial, serial=cert.serial).delete()
            with connection.cursor() as cur:
                cur.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"{cert.ca.serial}:{cert.serial}:{token}"])
        cert._govcloud_ocsp_token = token


def refresh(batch: int = 500) -> dict[str, int]:
    """The maintenance job: re-sign stored responses past half their validity and pre-produce the SHA-1 one
    (:data:`EAGER`) of every current certificate that has none. Returns CA name -> responses written."""
    from django_ca.models import Certificate, CertificateAuthority

    from ca.hierarchy import ISSUING
    from ca.models import OcspResponse

    done: dict[str, int] = {}
    for ca in CertificateAuthority.objects.filter(name__in=ISSUING):
        try:
            signer = _signer(ca)
        except ValueError:
            continue  # no responder certificate yet: the maintenance job creates it first
        now = datetime.now(tz=UTC)
        due: dict[str, set[str]] = {}
        for serial, algorithm in OcspResponse.objects.filter(
                ca_serial=ca.serial, this_update__lte=now - signer.issuer.validity / 2).values_list(
                "serial", "algorithm"):
            due.setdefault(serial, set()).add(algorithm)
        have = set(OcspResponse.objects.filter(ca_serial=ca.serial, algorithm__in=EAGER).values_list(
            "serial", flat=True))
        current = set(Certificate.objects.filter(ca=ca, not_after__gt=now).values_list("serial", flat=True))
        for serial in current - have:
            due.setdefault(serial, set()).update(EAGER)
        serials = sorted(set(due) & current)
        count = 0
        for i in range(0, len(serials), batch):
            rows: list[Any] = []
            read_at = datetime.now(tz=UTC)  # thisUpdate: not after the state is read (see _UPSERT)
            for cert in Certificate.objects.filter(ca=ca, serial__in=serials[i:i + batch]).select_related("ca"):
                rows += signer.rows(cert, read_at, sorted(due[cert.serial]))
            if rows:
                _store(rows)
                count += len(rows)
        if count:
            done[ca.name] = count
    return done


# --- the in-process LRU and its invalidation ------------------------------------------------------------------
class Memory:
    """Signed responses by (ca serial, serial, algorithm) with a wall-clock expiry; bounded LRU."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.data: OrderedDict[tuple[str, int, str], tuple[float, bytes]] = OrderedDict()
        self.lock = threading.Lock()
        self.generation = 0  # bumped by every eviction: a read that raced with one is not cached
        self.live = False  # only while this process's listener is connected

    def get(self, key: tuple[str, int, str]) -> bytes | None:
        hit = self.data.get(key)
        if hit is None:
            return None
        if hit[0] < time.time():
            with self.lock:
                self.data.pop(key, None)
            return None
        return hit[1]

    def put(self, key: tuple[str, int, str], until: float, der: bytes, generation: int) -> None:
        with self.lock:
            if not self.live or generation != self.generation:
                return
            self.data[key] = (until, der)
            if len(self.data) > self.entries:
                self.data.popitem(last=False)

    def evict(self, ca_serial: str, serial: str) -> None:
        number = int(serial, 16)
        with self.lock:
            self.generation += 1
            for algorithm in ALGORITHMS:
                self.data.pop((ca_serial, number, algorithm), None)

    def reset(self, live: bool) -> None:
        with self.lock:
            self.generation += 1
            self.data.clear()
            self.live = live


memory = Memory(int(os.environ.get("GOVCLOUD_SETTING_OCSP_MEMORY_ENTRIES", "50000")))


def _conninfo() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    params = {"dbname": db.get("NAME"), "user": db.get("USER"), "password": db.get("PASSWORD"),
              "host": db.get("HOST"), "port": db.get("PORT")}
    return {k: v for k, v in params.items() if v}


class Listener(threading.Thread):
    """LISTEN govcloud_ca_ocsp in this process: evict, then acknowledge on govcloud_ca_ocsp_ack."""

    def __init__(self) -> None:
        super().__init__(name="ocsp-listener", daemon=True)
        self.stopping = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**_conninfo(), autocommit=True, application_name=LISTENER_NAME) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    memory.reset(live=True)  # whatever changed while not listening is gone from memory
                    self.connected.set()
                    # announce it (tests and benchmarks wait for every worker of a server this way)
                    conn.execute("SELECT pg_notify(%s, %s)", (ACK_CHANNEL, f"listening:{os.getpid()}:{os.getppid()}"))
                    while not self.stopping.is_set():
                        # collected first: notifies() holds the connection while it waits
                        notes = list(conn.notifies(timeout=1.0, stop_after=1))
                        for note in notes:
                            ca_serial, serial, _ = note.payload.split(":")
                            memory.evict(ca_serial, serial)
                        for note in notes:
                            conn.execute("SELECT pg_notify(%s, %s)", (ACK_CHANNEL, note.payload.split(":")[2]))
            except Exception:
                log.warning("OCSP listener disconnected; serving from the table until it is back", exc_info=True)
            finally:
                memory.reset(live=False)
                self.connected.clear()
            self.stopping.wait(1.0)  # reconnect back-off

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


@contextmanager
def barrier(timeout: float = 5.0) -> Iterator[Callable[[str | None], dict[str, int]]]:
    """Listen for acknowledgements *before* the change commits; the yielded ``wait(token)`` returns
    ``{"workers": listening sessions, "acknowledged": n}`` once all of them evicted (or after ``timeout``)."""
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        conn.execute(f"LISTEN {ACK_CHANNEL}")

        def wait(token: str | None) -> dict[str, int]:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                               "AND datname = current_database()", (LISTENER_NAME,)).fetchone()
            workers = int(row[0]) if row else 0
            acked: set[int] = set()
            deadline = time.monotonic() + timeout
            while token and len(acked) < workers and time.monotonic() < deadline:
                for note in conn.notifies(timeout=deadline - time.monotonic(), stop_after=workers - len(acked)):
                    if note.payload == token:
                        acked.add(note.pid)
            return {"workers": workers, "acknowledged": len(acked)}

        yield wait


# --- answering -------------------------------------------------------------------------------------------
@dataclass
class Parsed:
    key: tuple[str, int, str] | None  # None: not for the pre-produced path (nonce, other hash) -> live
    error: bytes | None = None


def parse(ca_serial: str, der: bytes) -> Parsed:
    try:
        req = ocsp.load_der_ocsp_request(der)
    except (ValueError, NotImplementedError):  # garbage, or several CertIDs in one request
        return Parsed(None, _MALFORMED)
    algorithm = req.hash_algorithm.name
    if algorithm not in ALGORITHMS or any(e.oid == OCSPExtensionOID.NONCE or e.critical for e in req.extensions):
        return Parsed(None)
    known = _issuers.get(ca_serial)
    if known is not None and known.hashes[algorithm] != (req.issuer_name_hash, req.issuer_key_hash):
        return Parsed(None, _UNAUTHORIZED)
    return Parsed((ca_serial, req.serial_number, algorithm))


def fast(ca_serial: str, der: bytes) -> bytes | None:
    """The event-loop path: an answer without touching the database, or None."""
    parsed = parse(ca_serial, der)
    if parsed.error is not None:
        _served["malformed" if parsed.error is _MALFORMED else "unauthorized"].inc()
        return parsed.error
    if parsed.key is None or not memory.live:
        return None
    hit = memory.get(parsed.key)
    if hit is not None:
        _served["memory"].inc()
    return hit


def lookup(ca_serial: str, der: bytes) -> bytes:
    """The thread path: table, else sign now, else unauthorized; nonce requests to django-ca's live responder."""
    from django_ca.models import Certificate

    from ca.models import OcspResponse

    parsed = parse(ca_serial, der)
    if parsed.error is not None:
        return parsed.error
    if parsed.key is None:
        _served["live"].inc()
        return live(ca_serial, der)
    known = _issuer_by_serial(ca_serial)
    if known is None:
        _served["unauthorized"].inc()
        return _UNAUTHORIZED
    parsed = parse(ca_serial, der)  # again, now that the issuer hashes are known
    if parsed.error is not None or parsed.key is None:
        _served["unauthorized"].inc()
        return parsed.error or _UNAUTHORIZED
    _, number, algorithm = parsed.key
    generation = memory.generation
    now = datetime.now(tz=UTC)
    row = (OcspResponse.objects.filter(ca_serial=ca_serial, serial=_hex(number), algorithm=algorithm)
           .values_list("der", "this_update", "next_update").first())
    if row is not None and row[2] - now > RESIGN_MARGIN:
        der_out, this_update, next_update = bytes(row[0]), row[1], row[2]
        _served["table"].inc()
    else:
        cert = Certificate.objects.select_related("ca").filter(ca_id=known.ca_id, serial=_hex(number)).first()
        if cert is None:
            _served["unauthorized"].inc()
            return _UNAUTHORIZED
        rows = _signer(cert.ca).rows(cert, now, (algorithm,))  # now: taken before the certificate was read
        _store(rows)
        chosen = next(r for r in rows if r.algorithm == algorithm)
        der_out, this_update, next_update = chosen.der, chosen.this_update, chosen.next_update
        _served["signed"].inc()
    # in memory until the maintenance job has re-signed it (half its validity), never close to nextUpdate
    until = min(next_update - RESIGN_MARGIN, max(this_update + known.validity / 2, now + timedelta(seconds=60)))
    memory.put(parsed.key, until.timestamp(), der_out, generation)
    return der_out


def live(ca_serial: str, der: bytes) -> bytes:
    """django-ca's responder (signs per request; echoes a nonce)."""
    from django_ca.views import GenericOCSPView

    view = GenericOCSPView()
    view.kwargs = {"serial": ca_serial}
    return bytes(view.handle_ocsp_request_data(der).content)


# --- the ASGI front ---------------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_HEX = frozenset("0123456789ABCDEFabcdef")


def _sync(fn: Callable[[], bytes]) -> Callable[[], bytes]:
    def run() -> bytes:
        close_old_connections()
        try:
            return fn()
        finally:
            close_old_connections()
    return run


class Front:
    """``/ocsp/<ca>/cert/`` (POST, RFC 5019 GET) and ``/issuer/<ca>.der`` answered here, everything else passed on."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.issuer_der: dict[str, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/ocsp/"):
                raw = scope.get("raw_path") or path.encode()
                ca_serial, sep, rest = raw.decode("latin-1")[6:].partition("/cert/")
                if sep and ca_serial and set(ca_serial) <= _HEX:
                    if scope["method"] == "POST" and not rest:
                        body = await self._body(receive)
                        if body is not None:
                            return await self._ocsp(send, ca_serial.upper(), body, get=False)
                    elif scope["method"] == "GET" and rest:
                        try:
                            der = base64.b64decode(urllib.parse.unquote(rest), validate=True)
                        except (binascii.Error, ValueError):
                            der = b""
                        return await self._ocsp(send, ca_serial.upper(), der, get=True)
            elif path.startswith("/issuer/") and path.endswith(".der") and scope["method"] == "GET":
                ca_serial = path[8:-4].upper()
                if ca_serial and set(ca_serial) <= _HEX:
                    der = self.issuer_der.get(ca_serial)
                    if der is None:
                        der = await _threadpool(_sync(lambda: _issuer_cert(ca_serial)))
                    if der:
                        self.issuer_der[ca_serial] = der
                        return await _respond(send, 200, der, b"application/pkix-cert")
        await self.app(scope, receive, send)

    @staticmethod
    async def _body(receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_REQUEST:
                return b""  # answered as malformed
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    async def _ocsp(send: Send, ca_serial: str, der: bytes, get: bool) -> None:
        answer = fast(ca_serial, der)
        if answer is None:
            answer = await _threadpool(_sync(lambda: lookup(ca_serial, der)))
        extra: list[tuple[bytes, bytes]] = []
        if get and answer not in (_MALFORMED, _UNAUTHORIZED):  # RFC 5019 §6: cacheable by HTTP proxies
            extra = [(b"cache-control", b"max-age=300, public, no-transform, must-revalidate")]
        await _respond(send, 200, answer, CONTENT_TYPE.encode(), extra)


async def _threadpool(fn: Callable[[], bytes]) -> bytes:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn)


def _issuer_cert(ca_serial: str) -> bytes:
    from django_ca.models import CertificateAuthority

    ca = CertificateAuthority.objects.filter(serial=ca_serial).only("pub").first()
    return bytes(ca.pub.der) if ca is not None else b""


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
