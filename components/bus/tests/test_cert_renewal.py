"""The bus's own certificate is renewed from the CA before it expires and served without a restart.

tls-server certificates live 90 days; before this, a bus kept the certificate it got at its first start on its
volume and refused every member's handshake from day 91."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import ssl
from pathlib import Path

import pytest
from bus.app import Bus, BusConfig, ensure_certificate, own_certificate
from bus.tlsserver import mtls_server
from cryptography import x509
from govcloud_common.ca_client import CAError
from pki import Pki, _name

from conftest import AppServer, _listening_socket

NOW = dt.datetime.now(dt.UTC)


def _bus_files(pki: Pki, d: Path, *, days_left: float, lived: float = 59) -> BusConfig:
    """cert.pem/key.pem/chain.pem of a tls-server certificate that has ``days_left`` of its life left."""
    crt, key = pki.issue(f"bus-{d.name}", _name(O="govcloud", CN="bus"), client=False, san_ip=True,
                         not_before=NOW - dt.timedelta(days=lived), not_after=NOW + dt.timedelta(days=days_left))
    shutil.copy(crt, d / "cert.pem")
    shutil.copy(key, d / "key.pem")
    shutil.copy(pki.ca_bundle, d / "chain.pem")
    return BusConfig(admin_token="x", tls_cert=str(d / "cert.pem"), tls_key=str(d / "key.pem"),
                     ca_bundle=str(d / "chain.pem"), ca_url=pki.base_url, domain="gov.test", seal_interval=0)


def _serial(path: str) -> int:
    return x509.load_pem_x509_certificate(Path(path).read_bytes()).serial_number


def test_a_certificate_with_most_of_its_life_left_is_kept(pki: Pki, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVCLOUD_SECRET_CA_TOKEN", pki.token)
    cfg = _bus_files(pki, tmp_path, days_left=60, lived=1)
    before, issued = _serial(cfg.tls_cert), len(pki.issued)
    assert ensure_certificate(cfg).startswith("present: serial")
    assert _serial(cfg.tls_cert) == before and len(pki.issued) == issued


def test_a_due_certificate_is_renewed_and_a_mismatched_pair_reissued(pki: Pki, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVCLOUD_SECRET_CA_TOKEN", pki.token)
    cfg = _bus_files(pki, tmp_path, days_left=10)  # 10 of 69 days left: due (less than a third)
    before = _serial(cfg.tls_cert)
    assert ensure_certificate(cfg).startswith(f"renewed: serial {before:x} -> ")
    assert _serial(cfg.tls_cert) == pki.issued[-1].serial_number != before
    assert oct(Path(cfg.tls_key).stat().st_mode & 0o777) == "0o600"
    assert own_certificate(cfg).current() is not None  # key and certificate belong together
    assert not list(tmp_path.glob("*.new"))

    Path(cfg.tls_key).write_bytes(Path(pki.files["portal"][1]).read_bytes())  # a key of another certificate
    assert ensure_certificate(cfg).startswith("issued serial")
    assert own_certificate(cfg).current() is not None


def test_without_a_ca_a_due_certificate_serves_on_and_an_expired_one_is_an_error(pki: Pki, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    monkeypatch.delenv("GOVCLOUD_SECRET_CA_TOKEN", raising=False)
    cfg = _bus_files(pki, tmp_path, days_left=10)
    assert ensure_certificate(cfg).startswith("present but due for renewal")
    expired = _bus_files(pki, tmp_path, days_left=-1)
    with pytest.raises(RuntimeError, match=r"cert.pem expired and no CA to ask"):
        ensure_certificate(expired)


def test_a_refused_renewal_leaves_the_current_certificate(pki: Pki, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVCLOUD_SECRET_CA_TOKEN", "not-the-token")
    cfg = _bus_files(pki, tmp_path, days_left=10)
    files = {p: p.read_bytes() for p in tmp_path.glob("*.pem")}
    with pytest.raises(CAError, match="401"):
        ensure_certificate(cfg)
    assert {p: p.read_bytes() for p in tmp_path.glob("*.pem")} == files


async def _hello(app_scope: dict, receive, send) -> None:  # a bare ASGI app
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _handshake(port: int, ca: Path) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = ssl.create_default_context(cafile=str(ca))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number, reader, writer


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(2)


@pytest.mark.asyncio
async def test_the_running_bus_renews_and_serves_the_new_certificate_without_a_restart(
        pki: Pki, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVCLOUD_SECRET_CA_TOKEN", pki.token)
    cfg = _bus_files(pki, tmp_path, days_left=1)
    bus = Bus(cfg)  # not started: serving TLS and sealing need no database
    old = _serial(cfg.tls_cert)
    sock = _listening_socket()
    async with AppServer(mtls_server(_hello, "127.0.0.1", 0, bus.server_context()), sock, "https"):
        port = sock.getsockname()[1]
        served, reader, writer = await _handshake(port, pki.ca_bundle)
        assert served == old
        assert await _get(reader, writer) == b"HTTP/1.1 200 OK ok"

        renewed = asyncio.Event()

        def reload() -> None:
            bus.reload_certificate()
            renewed.set()

        keeper = asyncio.create_task(own_certificate(cfg).keep(reload, check_every_s=3600))
        try:
            await asyncio.wait_for(renewed.wait(), 20)
        finally:
            keeper.cancel()
        new = pki.issued[-1]
        assert _serial(cfg.tls_cert) == new.serial_number != old
        assert new.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=89)

        served_now, _r2, w2 = await _handshake(port, pki.ca_bundle)
        assert served_now == new.serial_number  # new handshakes get the renewed certificate
        assert await _get(reader, writer) == b"HTTP/1.1 200 OK ok"  # the open connection carries on
        assert bus.msglog.signer is not None
        assert x509.load_pem_x509_certificate(bus.msglog.signer.certificate_pem.encode()) == new  # seals too
        for w in (writer, w2):
            w.close()
    await bus.http.aclose()


def test_a_write_cut_short_is_finished_or_dropped_at_the_next_look(pki: Pki, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVCLOUD_SECRET_CA_TOKEN", pki.token)
    cfg = _bus_files(pki, tmp_path, days_left=60, lived=1)
    own = own_certificate(cfg)
    old = _serial(cfg.tls_cert)
    (tmp_path / "staged").mkdir()
    staged = _bus_files(pki, tmp_path / "staged", days_left=60, lived=1)
    new = _serial(staged.tls_cert)
    files = {"key.pem": Path(staged.tls_key), "cert.pem": Path(staged.tls_cert), "chain.pem": Path(staged.ca_bundle)}

    def stage(*names: str) -> None:
        for name in names:
            shutil.copy(files[name], tmp_path / f"{name}.new")

    stage("key.pem")  # the crash came while the .new files were still being written: dropped, the old set stays
    assert own.current() is not None and _serial(cfg.tls_cert) == old and not list(tmp_path.glob("*.new"))
    stage("key.pem", "cert.pem", "chain.pem")  # all written, none renamed yet: taken
    assert own.current() is not None and _serial(cfg.tls_cert) == new and not list(tmp_path.glob("*.new"))

    cfg = _bus_files(pki, tmp_path, days_left=60, lived=1)
    old = _serial(cfg.tls_cert)
    shutil.copy(files["key.pem"], tmp_path / "key.pem")  # the key was renamed, then the crash: the rest is finished
    stage("cert.pem", "chain.pem")
    assert own.current() is not None and _serial(cfg.tls_cert) == new != old


@pytest.mark.asyncio
async def test_a_failed_reload_does_not_end_the_renewals(pki: Pki, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GOVCLOUD_SECRET_CA_TOKEN", pki.token)
    cfg = _bus_files(pki, tmp_path, days_left=1)
    called = asyncio.Event()

    def reload() -> None:
        called.set()
        raise OSError("cannot read the new certificate")

    keeper = asyncio.create_task(own_certificate(cfg).keep(reload, check_every_s=3600))
    try:
        await asyncio.wait_for(called.wait(), 20)
        for _ in range(5):
            await asyncio.sleep(0)  # let the loop handle the failure
        assert not keeper.done()  # still there for the next renewal
        assert _serial(cfg.tls_cert) == pki.issued[-1].serial_number
    finally:
        keeper.cancel()
