"""Alerting fixtures: a local HTTP server standing in for Slack, a real SMTP server (aiosmtpd
with STARTTLS and AUTH), anomaly factories and a controllable clock."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.contracts import Anomaly, DetectorFamily, EntityType, Reason, Severity

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
SMTP_USER = "vigil"
SMTP_PASSWORD = "smtp-test-password"  # local test server only


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def make_anomaly(
    index: int,
    *,
    tenant: str = "acme",
    entity_type: EntityType = EntityType.MERCHANT,
    entity_id: str = "m-1",
    severity: Severity = Severity.CRITICAL,
    detector: str = "card-testing",
    detected_at: datetime = T0,
    score: float | None = None,
) -> Anomaly:
    """A deterministic anomaly (same index -> same anomaly_id)."""
    return Anomaly.build(
        detected_at=detected_at,
        tenant_id=tenant,
        transaction_id=f"tx-{index:06d}",
        entity_type=entity_type,
        entity_id=entity_id,
        event_time=detected_at - timedelta(seconds=1),
        detector_family=DetectorFamily.RULES,
        detector_name=detector,
        detector_version="1",
        score_raw=float(index),
        score=score if score is not None else round(50 + (index * 37 % 500) / 10, 1),
        severity=severity,
        reasons=[
            Reason(
                feature="card_count_1h",
                value=40.0,
                baseline=2.0,
                contribution=0.8,
                text="40 distinct cards in the last hour at this merchant (usually 2)",
            )
        ],
        amount="1.00",
        currency="EUR",
    )


# --- a local HTTP server standing in for Slack (and generic webhooks) ------------------------------


@dataclass
class Recorded:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeHttp:
    """Records every request; answers from `script` first, then with `default`."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    default: tuple[int, dict[str, str], bytes] = (200, {"Content-Type": "text/plain"}, b"ok")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, status: int = 200) -> list[Recorded]:
        """Requests that got `status` (the ones that count as delivered for 200)."""
        return [r for r in self.requests if r.headers.get("x-answered") == str(status)]

    def wait_for(self, count: int, *, timeout: float) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        return list(self.requests)


@pytest.fixture
def fake_http() -> Iterator[FakeHttp]:
    state = FakeHttp(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                status, headers, reply = state.script.pop(0) if state.script else state.default
                recorded_headers = {k.lower(): v for k, v in self.headers.items()}
                recorded_headers["x-answered"] = str(status)
                state.requests.append(Recorded(time.monotonic(), self.path, recorded_headers, body))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# --- a real SMTP server: aiosmtpd with STARTTLS required and AUTH --------------------------------


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: Path
    messages: list[EmailMessage] = field(default_factory=list)
    reply: str = "250 OK"  # set to "451 ..." or "550 ..." to make DATA fail
    tls_sessions: int = 0

    def wait_for(self, count: int, *, timeout: float) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.messages) < count:
            time.sleep(0.05)
        return list(self.messages)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (the client trusts it as its CA)."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server(tls_files: tuple[Path, Path]) -> Iterator[SmtpServer]:
    cert_file, key_file = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    state = SmtpServer(host="127.0.0.1", port=_free_port(), ca_file=cert_file)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if not state.reply.startswith("250"):
                return state.reply
            if session.ssl is not None:
                state.tls_sessions += 1
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            state.messages.append(message)
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        )
        return AuthResult(success=ok)

    controller = Controller(
        Handler(),
        hostname=state.host,
        port=state.port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    yield state
    controller.stop()
