"""The notification chain's public HTTP routes, as a plain ASGI app (no framework needed).

Mount it at ``/notify`` (serve does; any ASGI server can run it alone):

* ``GET  /notify/ack?s=…&g=…&e=…&sig=…`` — the acknowledge page a signed link
  opens (shows what is acknowledged; acknowledges nothing by itself);
* ``POST /notify/ack`` — the page's button: records the acknowledgement;
* ``POST /notify/pagerduty`` — PagerDuty v3 webhooks (signature verified);
* ``GET  /notify/status/<deployer>`` and ``…/<deployer>.json`` — the public
  status page and document a deployer (and the 503 notice) links to.

These routes need no login: a signed link, a PagerDuty signature or the
public nature of a status page is their authority. Acknowledging from the
console (logged in) calls :meth:`Notifier.acknowledge` directly.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from breakglass.notify.ack import AckError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from breakglass.notify.notifier import Notifier

    Scope = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_MAX_BODY = 1 << 20
_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5}h1{font-size:1.5rem}.halted{color:#a00}.ok{color:#060}"
    "button{font-size:1.1rem;padding:.6rem 1.2rem}dt{font-weight:bold}"
)


def _page(title: str, body: str) -> bytes:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    ).encode()


class NotifyApp:
    """The ASGI app of the routes above, for one :class:`Notifier`."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def __repr__(self) -> str:
        return "NotifyApp()"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http":
            return
        path = str(scope.get("path", "")).removeprefix(str(scope.get("root_path", "")))
        path = path.removeprefix("/notify")
        method = scope["method"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if path == "/ack" and method == "GET":
            await self._ack_page(query, send)
        elif path == "/ack" and method == "POST":
            form = dict(parse_qsl((await _body(receive)).decode("utf-8", "replace")))
            await self._ack(form, send)
        elif path == "/pagerduty" and method == "POST":
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            await self._pagerduty(await _body(receive), headers.get("x-pagerduty-signature"), send)
        elif path.startswith("/status/") and method in ("GET", "HEAD"):
            await self._status(path.removeprefix("/status/"), send)
        else:
            await _respond(send, 404, _page("Not found", "<h1>Not found</h1>"), "text/html")

    async def _ack_page(self, query: dict[str, str], send: Send) -> None:
        try:
            suspension_id, group = self.notifier.verify_link(query)
        except AckError as exc:
            await _respond(
                send,
                403,
                _page("Link not valid", f"<h1>Link not valid</h1><p>{html.escape(str(exc))}</p>"),
                "text/html",
            )
            return
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(query[k])}">'
            for k in ("s", "g", "e", "sig")
        )
        body = (
            f"<h1>Acknowledge the halt of {html.escape(self.notifier.policy.system)}</h1>"
            f"<p>Suspension <code>{html.escape(suspension_id)}</code>, group <strong>{html.escape(group)}</strong>.</p>"
            "<p>Acknowledging tells everyone that your group has seen this halt; it stops the "
            "escalation. It changes nothing about the halt itself.</p>"
            f'<form method="post" action="ack">{hidden}'
            '<p><label for="name">Your name</label><br><input id="name" name="name" required autocomplete="name"></p>'
            "<p><button type=submit>Acknowledge</button></p></form>"
        )
        await _respond(send, 200, _page("Acknowledge", body), "text/html")

    async def _ack(self, form: dict[str, str], send: Send) -> None:
        try:
            suspension_id, group = self.notifier.verify_link(form)
        except AckError as exc:
            await _respond(
                send,
                403,
                _page("Link not valid", f"<h1>Not acknowledged</h1><p>{html.escape(str(exc))}</p>"),
                "text/html",
            )
            return
        name = " ".join(form.get("name", "").split())[:120] or "anonymous"
        self.notifier.acknowledge(suspension_id, group, actor=f"link:{name}", via="link")
        body = f'<h1 class="ok">Acknowledged</h1><p>{html.escape(group)} has acknowledged suspension <code>{html.escape(suspension_id)}</code>. Thank you, {html.escape(name)}.</p>'
        await _respond(send, 200, _page("Acknowledged", body), "text/html")

    async def _pagerduty(self, body: bytes, signature: str | None, send: Send) -> None:
        try:
            found = self.notifier.pagerduty_webhook(body, signature)
        except AckError as exc:
            await _json(send, 401 if "signature" in str(exc) else 400, {"error": str(exc)})
            return
        await _json(
            send, 200, {"acknowledged": found is not None, "group": found.group if found else None}
        )

    async def _status(self, name: str, send: Send) -> None:
        as_json = name.endswith(".json")
        doc = self.notifier.deployer_status(name.removesuffix(".json"))
        if doc is None:
            await _json(send, 404, {"error": "no such deployer"})
            return
        if as_json:
            await _json(send, 200, doc)
            return
        await _respond(send, 200, _page(f"{doc['system']}: status", _status_html(doc)), "text/html")


def _status_html(doc: dict[str, Any]) -> str:
    e = html.escape
    if doc["status"] == "suspended":
        head = f'<h1 class="halted">{e(doc["system"])} is suspended</h1>'
        rows = [
            ("Since", doc["since"]),
            ("What you should do", doc["what_to_do"]),
            ("Next update", doc["next_update"]),
            ("Contact", doc["contact"]),
        ]
    else:
        head = f'<h1 class="ok">{e(doc["system"])} is operational</h1>'
        rows = [
            ("Last suspension", doc["since"]),
            ("Resumed", doc["resumed_at"]),
            ("Contact", doc["contact"]),
        ]
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in rows if v)
    return f"{head}<p>For {e(doc['name'])}.</p><dl>{items}</dl><p><small>Updated {e(doc['updated_at'])}</small></p>"


async def _body(receive: Receive) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            break
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _json(send: Send, status: int, data: dict[str, Any]) -> None:
    await _respond(send, status, json.dumps(data).encode(), "application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", f"{content_type}; charset=utf-8".encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", _CSP.encode()),
        (b"referrer-policy", b"no-referrer"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
