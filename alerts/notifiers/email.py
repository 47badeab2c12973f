"""E-mail notifier: plain text with the alert context, over SMTP with STARTTLS (certificate verified)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from alerts.notifiers import DeliveryError, NotificationBatch, alert_annotations, iso
from config.secret import Secret


def email_text(batch: NotificationBatch) -> tuple[str, str]:
    """Subject and body: one block per alert with value, labels and annotations (runbook, envelope)."""
    first = batch.alerts[0]
    more = f" (+{len(batch.alerts) - 1} more)" if len(batch.alerts) > 1 else ""
    subject = f"[{batch.status.upper()}] {first.rule} {first.labels.get('device', '')}{more}".strip()
    blocks = []
    for alert in batch.alerts:
        lines = [f"{alert.severity.upper()} {alert.rule}: {alert.summary}",
                 f"  started: {iso(alert.fired_at or alert.active_since)}"]
        if alert.resolved_at is not None:
            lines.append(f"  resolved: {iso(alert.resolved_at)}")
        lines += [f"  {k}: {v}" for k, v in sorted(alert.labels.items())]
        lines += [f"  {k}: {v}" for k, v in sorted(alert_annotations(alert).items()) if k != "summary"]
        blocks.append("\n".join(lines))
    return subject, "\n\n".join(blocks) + f"\n\n-- facwatch, receiver {batch.receiver}, group {batch.group_key}\n"


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifying context (system CAs, or ``ca_file``), TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class EmailNotifier:
    """Sends one mail per batch; STARTTLS is mandatory unless the receiver is configured ``insecure``."""

    def __init__(self, host: str, port: int, sender: str, to: list[str], *, username: str | None = None,
                 password: Secret | None = None, insecure: bool = False, ca_file: str | None = None,
                 timeout: float = 10.0):
        self.host, self.port, self.sender, self.to = host, port, sender, to
        self.username, self.password = username, password
        self.insecure, self.ca_file, self.timeout = insecure, ca_file, timeout

    def __repr__(self) -> str:
        return f"EmailNotifier({self.host!r}, {self.port})"

    async def send(self, batch: NotificationBatch) -> None:
        """Deliver ``batch``; raise DeliveryError on failure."""
        await asyncio.to_thread(self._send, self._message(batch))

    def _message(self, batch: NotificationBatch) -> EmailMessage:
        subject, body = email_text(batch)
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, self.sender, ", ".join(self.to)
        message.set_content(body)
        return message

    def _send(self, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                self._secure(smtp)
                if self.username and self.password is not None:
                    smtp.login(self.username, self.password.reveal())
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            # 4xx is transient by RFC 5321; 5xx (bad auth, relay refused) will not fix itself
            raise DeliveryError(f"{self.host}: SMTP {exc.smtp_code}", retryable=exc.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, timeout, TLS failure, recipients refused
            # the class name only: smtplib texts can echo server replies; the password is never in them
            raise DeliveryError(f"{self.host}: {type(exc).__name__}", retryable=True) from None

    def _secure(self, smtp: smtplib.SMTP) -> None:
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=tls_context(self.ca_file))
            smtp.ehlo()
        elif not self.insecure:
            raise DeliveryError(f"{self.host}: server does not offer STARTTLS", retryable=True)
