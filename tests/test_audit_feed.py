"""The HTTP audit feed source (the kill switch's records) against good and hostile answers."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from breakglass.audit.feed import FEED_SCHEMA, FeedAuditSource
from breakglass.errors import AuditSourceError
from breakglass.retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Iterator

RECORD = {
    "schema": "breakglass.audit/v1",
    "id": "killswitch:prod:ab12:1",
    "provider": "killswitch",
    "vendor_event_id": "prod:ab12:1",
    "vendor_event_type": "halt",
    "flag_key": "system-active",
    "project": None,
    "environment": "prod",
    "action": "disabled",
    "value_before": True,
    "value_after": False,
    "actor": {"kind": "api_token", "id": "hal", "email": None, "name": "hal"},
    "comment": "incident",
    "occurred_at": "2026-12-05T10:00:00.000Z",
    "pulled_at": "2026-12-05T10:00:00.000Z",
    "raw": {"verdict": "HALTED"},
}


class Feed:
    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, bytes]] = {}
        self.seen: list[tuple[str, str | None]] = []

    def page(self, after: str, records: list[Any], cursor: str, *, more: bool) -> None:
        body = {"schema": FEED_SCHEMA, "records": records, "cursor": cursor, "more": more}
        self.pages[after] = (200, json.dumps(body).encode())


@pytest.fixture
def feed() -> Iterator[tuple[Feed, str]]:
    state = Feed()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:
            after = parse_qs(urlsplit(self.path).query).get("after", ["?"])[0]
            state.seen.append((after, self.headers.get("Authorization")))
            status, body = state.pages.get(after, (404, b""))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/v1/audit"
    finally:
        server.shutdown()
        server.server_close()


def _source(url: str) -> FeedAuditSource:
    policy = RetryPolicy(attempts=2, budget=2.0, base_delay=0.01, max_delay=0.02)
    return FeedAuditSource(
        url, provider="killswitch", token=SecretStr("bgks_secret"), policy=policy
    )


def test_pages_are_followed_and_malformed_entries_counted(feed: tuple[Feed, str]) -> None:
    state, url = feed
    second = dict(RECORD, id="killswitch:prod:ab12:2", vendor_event_id="prod:ab12:2")
    state.page("0", [RECORD, {"schema": "other"}, "text"], "3", more=True)
    state.page("3", [second], "4", more=False)

    pages = list(_source(url).pull(None))

    assert [p.cursor for p in pages] == ["3", "4"]
    assert [r.id for p in pages for r in p.records] == [
        "killswitch:prod:ab12:1",
        "killswitch:prod:ab12:2",
    ]
    assert pages[0].malformed == 2
    assert pages[0].records[0].pulled_at.isoformat() != RECORD["pulled_at"]  # when we fetched it
    assert state.seen[0] == ("0", "Bearer bgks_secret")
    state.page("4", [], "4", more=False)
    assert [p.records for p in _source(url).pull("4")] == [[]]  # resumes after the stored cursor


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((401, b""), "refused the token (401)"),
        ((500, b""), "answered 500"),
        ((200, b"not json"), "not JSON"),
        ((200, b'{"schema": "other"}'), "not a breakglass.audit-feed/v1 page"),
        ((200, json.dumps({"schema": FEED_SCHEMA, "records": {}}).encode()), "missing"),
    ],
)
def test_hostile_answers_are_errors_without_the_token(
    feed: tuple[Feed, str], answer: tuple[int, bytes], message: str
) -> None:
    state, url = feed
    state.pages["0"] = answer
    with pytest.raises(AuditSourceError, match=re.escape(message)) as caught:
        list(_source(url).pull(None))
    assert "bgks_secret" not in str(caught.value)
    assert "bgks_secret" not in repr(_source(url))


def test_an_unreachable_feed_is_an_error(feed: tuple[Feed, str]) -> None:
    with pytest.raises(AuditSourceError, match="cannot reach"):
        list(_source("http://127.0.0.1:9/v1/audit").pull(None))
