"""E-mail over SMTP with the standard library (STARTTLS, implicit TLS, or a local relay).

The message has a fixed ``Message-ID`` derived from the outbox row, so a
retry after a lost answer is recognisable as the same message. Reply codes:
2xx delivered (the DATA reply, often naming the server's queue id, is kept as
the response id); 4xx (temporary) retried; 5xx (permanent: unknown recipient,
authentication refused, message rejected) never retried. Connection failures
and timeouts are retried. A server that does not offer STARTTLS when it is
required gets nothing: a message is never sent in clear by surprise.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING

from breakglass.notify.channels.base import Delivery, Outcome, Outgoing

if TYPE_CHECKING:
    from breakglass.notify.config import EmailChannel

_TEMPORARY = range(400, 500)


def build_message(out: Outgoing, config: EmailChannel) -> EmailMessage:
    """The e-mail: plain text, with the test mark in the subject of a test."""
    message = EmailMessage()
    message["Subject"] = out.message.title
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message["Date"] = formatdate(usegmt=True)
    digest = hashlib.sha256(out.outbox_id.encode()).hexdigest()[:32]
    domain = config.sender.rsplit("@", 1)[-1]
    # Fixed per outbox row: a retried e-mail carries the same id as the first try.
    message["Message-ID"] = f"<breakglass.{digest}@{domain}>"
    message["X-Breakglass-Suspension"] = out.event.suspension_id
    if out.message.test:
        message["X-Breakglass-Test"] = "yes"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(out.message.text())
    return message


def _reply(exc: smtplib.SMTPResponseException) -> Delivery:
    text = (
        exc.smtp_error.decode(errors="replace")
        if isinstance(exc.smtp_error, bytes)
        else str(exc.smtp_error)
    )
    outcome = Outcome.RETRY if exc.smtp_code in _TEMPORARY else Outcome.FAILED
    return Delivery(
        outcome, exc.smtp_code, detail=f"SMTP server answered {exc.smtp_code} {text}".strip()
    )


class EmailSender:
    """Sends through one SMTP server."""

    def __init__(self, config: EmailChannel) -> None:
        self._config = config

    def __repr__(self) -> str:
        return f"EmailSender({self._config.host}:{self._config.port})"

    def _tls(self) -> ssl.SSLContext:
        cafile = str(self._config.ca_file) if self._config.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def _connect(self, timeout: float) -> smtplib.SMTP:
        config = self._config
        if config.security == "tls":
            return smtplib.SMTP_SSL(config.host, config.port, timeout=timeout, context=self._tls())
        smtp = smtplib.SMTP(config.host, config.port, timeout=timeout)
        if config.security == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                smtp.close()
                raise _NoStartTLSError
            smtp.starttls(context=self._tls())
            smtp.ehlo()
        return smtp

    def send(self, out: Outgoing, timeout: float) -> Delivery:
        """Send the e-mail to every recipient of the channel."""
        config = self._config
        where = f"{config.host}:{config.port}"
        message = build_message(out, config)
        try:
            smtp = self._connect(timeout)
        except _NoStartTLSError:
            return Delivery(
                Outcome.FAILED, None, detail=f"{where} does not offer STARTTLS; not sent in clear"
            )
        except ssl.SSLCertVerificationError as exc:
            return Delivery(
                Outcome.FAILED,
                None,
                detail=f"{where}: certificate not trusted ({exc.verify_message})",
            )
        except smtplib.SMTPResponseException as exc:
            return _reply(exc)
        except (OSError, smtplib.SMTPException) as exc:
            return Delivery(
                Outcome.RETRY, None, detail=f"cannot reach {where}: {type(exc).__name__}"
            )
        try:
            return self._transact(smtp, message, where)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    def _transact(self, smtp: smtplib.SMTP, message: EmailMessage, where: str) -> Delivery:
        config = self._config
        try:
            smtp.ehlo_or_helo_if_needed()
            if config.username is not None and config.password is not None:
                _login(smtp, config.username, config.password.get_secret_value())
            code, reply = smtp.mail(config.sender)
            if code != 250:
                return _reply(smtplib.SMTPSenderRefused(code, reply, config.sender))
            accepted = 0
            refused: list[str] = []
            codes: list[int] = []
            for address in config.to:
                code, reply = smtp.rcpt(address)
                if code in (250, 251):
                    accepted += 1
                else:
                    codes.append(code)
                    refused.append(f"{address}: {code} {reply.decode(errors='replace')}")
            if not accepted:
                outcome = Outcome.RETRY if all(c in _TEMPORARY for c in codes) else Outcome.FAILED
                return Delivery(
                    outcome, None, detail="every recipient was refused: " + "; ".join(refused)
                )
            code, reply = smtp.data(message.as_bytes())
        except smtplib.SMTPResponseException as exc:
            return _reply(exc)
        except (OSError, smtplib.SMTPException) as exc:
            return Delivery(Outcome.RETRY, None, detail=f"{where}: {type(exc).__name__}")
        text = reply.decode(errors="replace")
        if code != 250:
            return _reply(smtplib.SMTPDataError(code, reply))
        detail = f"SMTP server answered {code} {text}"
        if refused:
            detail += f" (refused: {'; '.join(refused)})"
        return Delivery(Outcome.DELIVERED, code, text[:200] or None, detail)


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    # One mechanism, one try: smtplib.login would try each offered mechanism in
    # turn, and servers drop the connection after repeated failures, hiding the 535.
    if "PLAIN" in smtp.esmtp_features.get("auth", "").upper().split():
        smtp.user, smtp.password = username, password
        smtp.auth("PLAIN", smtp.auth_plain)
    else:
        smtp.login(username, password)


class _NoStartTLSError(Exception):
    pass
