"""E-mail through a real SMTP server (aiosmtpd): STARTTLS with a certificate made here, authentication, refusals."""

from __future__ import annotations

import email
import socket
import ssl
from email.message import Message as MailMessage
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from breakglass.notify.channels import Outcome, Outgoing, build_sender
from breakglass.notify.channels.http import HttpSession
from breakglass.notify.event import EventKind, SuspensionEvent
from breakglass.notify.render import operator_message
from breakglass.policy import parse_policy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.live

USER = "breakglass"
PASSWORD = "s3cret-smtp-Pa55"  # noqa: S105 -- the test server's


class Mailbox:
    """aiosmtpd handler: keeps messages, refuses some recipients as a real server does."""

    def __init__(self) -> None:
        self.messages: list[MailMessage] = []
        self.envelopes: list[Any] = []

    async def handle_RCPT(  # noqa: N802 -- aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
        if address.startswith("later@"):
            return "451 4.3.0 Temporary lookup failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 -- aiosmtpd's hook name
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content))
        return f"250 2.0.0 Ok: queued as Q{len(self.messages):04d}"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@pytest.fixture
def smtp_tls(ca: tuple[trustme.CA, Path]) -> Iterator[tuple[Mailbox, int]]:
    authority, _ = ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    box = Mailbox()
    port = _free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=_authenticate,
        auth_require_tls=True,
        auth_required=True,
    )
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def smtp_plain() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def _send(channel: dict[str, Any], kind: EventKind = EventKind.HALT) -> Any:
    policy = parse_policy(
        {
            "notify": {
                "system": "Credit scoring",
                "groups": {"dpo": {"kind": "dpo-liaison", "within": "4h", "channels": [channel]}},
            }
        }
    ).notify
    event = SuspensionEvent(
        kind,
        "s-9",
        "ana@example.org",
        "drift",
        "2026-12-05T09:58:03.120Z",
        "2026-12-05T09:58:03.120Z",
    )
    message = operator_message(
        event, policy, group="dpo", ack_url="https://console.example.org/notify/ack?s=s-9"
    )
    http = HttpSession()
    try:
        return build_sender(policy.groups["dpo"].channels[0], http).send(
            Outgoing("s-9/halt/dpo/email", event, "dpo", message, "breakglass/s-9/dpo"), 5.0
        )
    finally:
        http.close()


def _tls_channel(port: int, ca_file: Path, **changes: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "to": ["dpo@example.org"],
        "from": "breakglass@example.org",
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "username": USER,
        "password": PASSWORD,
        "ca_file": str(ca_file),
        **changes,
    }


def test_starttls_and_login_deliver_the_message(
    smtp_tls: tuple[Mailbox, int], ca: tuple[trustme.CA, Path]
) -> None:
    box, port = smtp_tls
    result = _send(_tls_channel(port, ca[1]))
    assert result.outcome is Outcome.DELIVERED, result.detail
    assert result.status == 250
    assert result.response_id == "2.0.0 Ok: queued as Q0001"
    (message,) = box.messages
    assert message["Subject"] == "HALTED: Credit scoring is suspended"
    assert message["To"] == "dpo@example.org"
    assert message["Message-ID"].startswith("<breakglass.")
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert "Why: drift" in text
    assert "Acknowledge: https://console.example.org/notify/ack?s=s-9" in text


def test_the_same_row_keeps_its_message_id(
    smtp_tls: tuple[Mailbox, int], ca: tuple[trustme.CA, Path]
) -> None:
    box, port = smtp_tls
    _send(_tls_channel(port, ca[1]))
    _send(_tls_channel(port, ca[1]))
    assert box.messages[0]["Message-ID"] == box.messages[1]["Message-ID"]


def test_wrong_password_is_never_retried_and_not_echoed(
    smtp_tls: tuple[Mailbox, int], ca: tuple[trustme.CA, Path]
) -> None:
    box, port = smtp_tls
    result = _send(_tls_channel(port, ca[1], password="n0t-The-Pa55w0rd"))  # noqa: S106 -- a wrong one
    assert result.outcome is Outcome.FAILED
    assert result.status == 535
    assert "n0t-The-Pa55w0rd" not in result.detail
    assert not box.messages


def test_an_untrusted_certificate_is_refused(smtp_tls: tuple[Mailbox, int], tmp_path: Path) -> None:
    _, port = smtp_tls
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result = _send(_tls_channel(port, other))
    assert result.outcome is Outcome.FAILED
    assert "certificate not trusted" in result.detail


def test_a_server_without_starttls_gets_nothing(
    smtp_plain: tuple[Mailbox, int], ca: tuple[trustme.CA, Path]
) -> None:
    box, port = smtp_plain
    result = _send(_tls_channel(port, ca[1]))
    assert result.outcome is Outcome.FAILED
    assert "does not offer STARTTLS" in result.detail
    assert not box.messages


def test_unknown_recipient_fails_temporary_refusal_retries(smtp_plain: tuple[Mailbox, int]) -> None:
    _, port = smtp_plain
    base = {
        "type": "email",
        "from": "breakglass@example.org",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
    }
    failed = _send({**base, "to": ["nobody@example.org"]})
    assert failed.outcome is Outcome.FAILED
    assert "550" in failed.detail
    later = _send({**base, "to": ["later@example.org"]})
    assert later.outcome is Outcome.RETRY
    partial = _send({**base, "to": ["dpo@example.org", "nobody@example.org"]})
    assert partial.outcome is Outcome.DELIVERED
    assert "nobody@example.org" in partial.detail


def test_connection_refused_is_retried() -> None:
    port = _free_port()
    result = _send(
        {
            "type": "email",
            "to": ["a@example.org"],
            "from": "b@example.org",
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
        }
    )
    assert result.outcome is Outcome.RETRY
