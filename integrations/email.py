"""Email out: over SMTP when a server is configured, otherwise into a local mailbox folder.

Both take the outbox payload (`to`, `to_name`, `subject`, `text`, `html`) and its idempotency
key. The Message-ID is derived from the key, so a message delivered again after a crash is
recognisably the same message, and the mailbox folder writes it to the same file.
"""

import contextlib
import email.policy
import functools
import hashlib
import ipaddress
import os
import smtplib
import ssl
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any, Protocol

from config.settings import Settings
from integrations.errors import PermanentError, TransientError, UnavailableError


class EmailSender(Protocol):
    def send(self, message: EmailMessage) -> str:
        """Deliver one message; return an id for the record (its Message-ID or file)."""
        ...

    def close(self) -> None: ...


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, which otherwise makes a new class for every header it
    parses (about a third of the time spent building a message)."""

    @functools.cache  # noqa: B019 - one registry for the process
    def __getitem__(self, name: str) -> type[BaseHeader]:
        return super().__getitem__(name)


POLICY = email.policy.default.clone(header_factory=_HeaderClasses())


def build_message(
    payload: dict[str, Any], *, sender: str, key: str, files: Path | None = None
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) from an outbox payload, with its
    `attachments` ({"file": a path under `files`, "filename", "type"}) read at sending."""
    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    to_name = " ".join(str(payload.get("to_name") or "").split())
    message["To"] = str(Address(display_name=to_name, addr_spec=payload["to"]))
    message["Subject"] = " ".join(str(payload["subject"]).split())
    message["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "rally.localhost"
    message["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"
    message.set_content(payload["text"])
    if payload.get("html"):
        message.add_alternative(payload["html"], subtype="html")
    for attachment in payload.get("attachments") or []:
        if files is None:
            raise ValueError("an attachment, and no folder to read it from")
        path = (files / attachment["file"]).resolve()
        if not path.is_relative_to(files.resolve()):
            raise ValueError(f"attachment {attachment['file']!r} is outside {files}")
        maintype, _, subtype = str(attachment["type"]).partition("/")
        message.add_attachment(
            path.read_bytes(), maintype=maintype, subtype=subtype, filename=attachment["filename"]
        )
    return message


class MailboxSender:
    """Writes each message as an `.eml` file: the embedded default, with no mail server."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = str(message["Message-ID"]).strip("<>").partition("@")[0] + ".eml"
        target = self.folder / name
        partial = target.with_suffix(".eml.partial")
        partial.write_bytes(bytes(message))
        os.replace(partial, target)
        return name

    def close(self) -> None:
        pass


class SmtpSender:
    """One SMTP connection reused for a whole drain pass; STARTTLS, implicit TLS and login."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.timeout = timeout
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        where = f"SMTP server {self.host}:{self.port}"
        if self.username and self.security == "none" and not _loopback(self.host):
            raise UnavailableError(
                f"refusing to send the SMTP password unencrypted to {self.host}: "
                "set RALLY_SMTP_SECURITY to starttls or ssl"
            )
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.ssl_context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    smtp.starttls(context=self.ssl_context)
            if self.username:
                smtp.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise UnavailableError(f"{where} refused the login ({exc.smtp_code})") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise UnavailableError(f"{where}: {exc}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise UnavailableError(f"cannot reach {where}: {exc}") from None
        return smtp

    def send(self, message: EmailMessage) -> str:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            refused = self._smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _by_code(*next(iter(exc.recipients.values()))) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._smtp = None  # reconnect on the next try
            raise TransientError(f"connection to {self.host}:{self.port} lost: {exc}") from None
        if refused:
            raise _by_code(*next(iter(refused.values())))
        return str(message["Message-ID"])

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._smtp = None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _by_code(code: int, text: bytes | str) -> Exception:
    said = text.decode(errors="replace") if isinstance(text, bytes) else text
    message = f"SMTP {code} {said}".strip()
    return TransientError(message) if 400 <= code < 500 else PermanentError(message)


def sender_for(settings: Settings) -> EmailSender:
    """SMTP when `RALLY_SMTP_HOST` is set, else the mailbox folder under `RALLY_HOME`."""
    if not settings.smtp_host:
        return MailboxSender(settings.mailbox)
    context = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
    return SmtpSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        ssl_context=context,
    )
