"""Email over SMTP with STARTTLS (aiosmtplib): one multipart message, plain text + HTML."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from alerting.channels.base import DeliveryResult
from alerting.config import EmailReceiver
from alerting.model import NotificationContent
from alerting.render import email_html, email_subject, email_text


def build_message(content: NotificationContent, *, sender: str, to: list[str]) -> EmailMessage:
    """The email for a notification; its Message-ID derives from the dedup key (same on retry)."""
    message = EmailMessage()
    message["Subject"] = email_subject(content)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(content.generated_at.timestamp(), usegmt=True)
    digest = hashlib.sha256(content.dedup_key.encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{digest}@vigil.alerting>"
    message["X-Vigil-Dedup-Key"] = content.dedup_key
    message["X-Vigil-Severity"] = content.severity.value
    message.set_content(email_text(content))
    message.add_alternative(email_html(content), subtype="html")
    return message


def _classify(code: int, detail: str) -> DeliveryResult:
    # RFC 5321: 4xx is a transient failure (try later), 5xx is permanent.
    if 400 <= code < 500:
        return DeliveryResult.retry(f"SMTP {code}: {detail}")
    return DeliveryResult.failed(f"SMTP {code}: {detail}")


class EmailChannel:
    """Send through an SMTP submission server; STARTTLS unless the receiver turns it off."""

    def __init__(self, config: EmailReceiver) -> None:
        self.name = config.name
        self._config = config
        self._tls: ssl.SSLContext | None = None
        if config.ca_file is not None:
            self._tls = ssl.create_default_context(cafile=str(config.ca_file))

    def send(self, content: NotificationContent) -> DeliveryResult:
        config = self._config
        message = build_message(content, sender=config.sender, to=config.to)
        try:
            refused, _ = asyncio.run(
                aiosmtplib.send(
                    message,
                    hostname=config.host,
                    port=config.port,
                    username=config.username,
                    password=config.password.get_secret_value() if config.password else None,
                    start_tls=config.starttls,
                    tls_context=self._tls,
                    timeout=config.timeout.total_seconds(),
                )
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            return _classify(first.code, f"all recipients refused ({first.recipient}: {first.message})")
        except aiosmtplib.SMTPResponseException as exc:
            return _classify(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return DeliveryResult.retry(f"{type(exc).__name__}: {exc}")
        if refused:
            # Some recipients took it: resending would duplicate theirs, so record and stop.
            return DeliveryResult.sent("refused: " + ", ".join(f"{r} ({v[0]})" for r, v in refused.items()))
        return DeliveryResult.sent()

    def close(self) -> None:
        """One connection per message: nothing to release."""
