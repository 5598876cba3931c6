"""Notification latency: from the halt's acknowledgement to the first attempt and to the receiver.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_notify.py                  # 200 halts, SQLite outbox
    .venv/bin/python benchmarks/bench_notify.py --postgres       # PostgreSQL on 127.0.0.1
    .venv/bin/python benchmarks/bench_notify.py --halts 500 --json
    .venv/bin/python benchmarks/bench_notify.py --serve --halts 100   # end to end through serve

Four immediate groups (on-call: PagerDuty and Slack; governance lead: Teams;
DPO liaison: a Standard Webhooks receiver; senior management: Slack), every
condition true, so each halt stores five notifications. The receivers are
one healthy local HTTP server answering as the services do (202, ``ok``,
204) at once. For each halt, ``t0`` is the moment :meth:`Notifier.halted`
is called, which is what serve does right after it has answered the halt.

* **first attempt**: per halt, the latest of the five notifications' first
  attempt start (``first_attempt_at`` in the outbox) minus ``t0``: every
  immediate group has been tried by then. Target p99 <= 1 s.
* **received**: per halt, the latest arrival at the receiver minus ``t0``:
  every channel has it by then. Target p99 <= 5 s.

Halts run one after the other, each once the previous one is fully delivered.

With ``--serve`` every halt goes through ``breakglass serve`` (in this process,
on uvicorn, the local provider, SQLite): ``POST /v1/halt`` as a halter, and
``t0`` is the target's ``acknowledged_at`` from the answer, so the time serve
takes to answer and to hand the halt to its listener thread is included. Each
round then resumes through the API and waits for every notification.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from breakglass.audit.postgres import PostgresAuditStore
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditStore
from breakglass.notify.notifier import Notifier
from breakglass.notify.outbox import Outbox
from breakglass.policy import parse_policy

ROUTING_KEY = "0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + "QmVuY2htYXJrU2VjcmV0S2V5MDEyMzQ1Njc4OTA="


class Receiver:
    """A healthy service: answers at once, notes when each request arrived (wall clock)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                now = time.time()
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with outer.lock:
                    outer.arrivals.append((now, body))
                status, text = (
                    (202, '{"status":"success","dedup_key":"x"}')
                    if self.path == "/v2/enqueue"
                    else (200, "ok")
                )
                data = text.encode()
                self.send_response(status)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, suspension_id: str) -> list[float]:
        """Arrival times of the requests about ``suspension_id`` (and forget every arrival so far)."""
        needle = suspension_id.encode()
        with self.lock:
            found = [at for at, body in self.arrivals if needle in body]
            self.arrivals.clear()
        return found


def _policy(url: str) -> Any:
    def group(kind: str, *channels: dict[str, Any]) -> dict[str, Any]:
        return {"kind": kind, "timeframe": "immediate", "channels": list(channels)}

    return parse_policy(
        {
            "notify": {
                "system": "Benchmark system",
                "groups": {
                    "on-call": group(
                        "on-call",
                        {
                            "type": "pagerduty",
                            "routing_key": ROUTING_KEY,
                            "url": f"{url}/v2/enqueue",
                        },
                        {"type": "slack", "webhook_url": f"{url}/slack/oncall"},
                    ),
                    "governance": group(
                        "governance-lead", {"type": "teams", "webhook_url": f"{url}/teams/gov"}
                    ),
                    "dpo": group(
                        "dpo-liaison",
                        {"type": "webhook", "url": f"{url}/hook/dpo", "secret": SECRET},
                    ),
                    "management": group(
                        "senior-management", {"type": "slack", "webhook_url": f"{url}/slack/mgmt"}
                    ),
                },
            }
        }
    ).notify


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": round(pick(0.50) * 1000, 1),
        "p95": round(pick(0.95) * 1000, 1),
        "p99": round(pick(0.99) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
        "mean": round(statistics.fmean(ordered) * 1000, 1),
    }


def run(store: AuditStore, halts: int) -> dict[str, Any]:
    receiver = Receiver()
    notifier = Notifier(_policy(receiver.url), Outbox(store))
    notifier.start()
    first: list[float] = []
    received: list[float] = []
    try:
        for _ in range(halts):
            sid = f"bench-{secrets.token_hex(6)}"
            t0 = time.time()
            groups = notifier.halted(
                suspension_id=sid,
                actor="bench",
                reason="benchmark",
                since=datetime.fromtimestamp(t0, UTC),
                personal_data_affected=True,
                business_continuity=True,
            )
            assert len(groups) == 4
            rows = _rows_done(notifier, sid, 5)
            first.append(max(r.first_attempt_at or 0 for r in rows) - t0)
            arrivals = receiver.take(sid)
            assert len(arrivals) == 5, arrivals
            received.append(max(arrivals) - t0)
    finally:
        notifier.close()
        receiver.server.shutdown()
    return {
        "halts": halts,
        "first_attempt_ms": _percentiles(first),
        "received_ms": _percentiles(received),
    }


def _rows_done(notifier: Notifier, sid: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    rows = notifier.outbox.notifications(sid)
    while time.monotonic() < deadline:
        rows = notifier.outbox.notifications(sid)
        if len(rows) >= count and all(r.state in ("accepted", "delivered") for r in rows):
            return rows
        time.sleep(0.002)
    sys.exit(f"{sid} not delivered within 30 s")


def run_serve(root: Path, halts: int) -> dict[str, Any]:
    """Each halt through serve's API; ``t0`` = the target's acknowledgement."""
    from breakglass.clock import parse_iso
    from breakglass.notify.listener import NotifyListener
    from breakglass.notify.notifier import open_notifier
    from breakglass.testing.serve import local_settings, running_serve

    receiver = Receiver()
    settings = local_settings(root)
    notifier = open_notifier(settings, _policy(receiver.url))
    notifier.start()
    first: list[float] = []
    received: list[float] = []
    try:
        with running_serve(root, settings, listeners=[NotifyListener(notifier)]) as serve:
            assert serve.wait_active(True)  # noqa: FBT003 -- the state awaited
            halter, approver = serve.client("halter"), serve.client("approver")
            body = {
                "reason": "benchmark",
                "personal_data_affected": True,
                "business_continuity": True,
            }
            for _ in range(halts):
                answer = halter.post("/v1/halt", json=body).json()
                sid = answer["suspension_id"]
                t0 = min(
                    parse_iso(t["acknowledged_at"]).timestamp()
                    for t in answer["targets"]
                    if t["acknowledged_at"]
                )
                rows = _rows_done(notifier, sid, 5)
                first.append(max(r.first_attempt_at or 0 for r in rows) - t0)
                arrivals = receiver.take(sid)
                assert len(arrivals) == 5, arrivals
                received.append(max(arrivals) - t0)
                approver.post("/v1/resume", json={"reason": "benchmark round over"})
                _rows_done(notifier, sid, 10)
                receiver.take(sid)
                assert serve.wait_active(True, timeout=10)  # noqa: FBT003 -- the state awaited
            halter.close()
            approver.close()
    finally:
        notifier.close()
        receiver.server.shutdown()
    return {
        "halts": halts,
        "first_attempt_ms": _percentiles(first),
        "received_ms": _percentiles(received),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halts", type=int, default=200)
    parser.add_argument(
        "--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--serve", action="store_true", help="every halt through breakglass serve's API"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result: dict[str, Any]
        if args.serve:
            kind = "sqlite, through serve"
            result = {"store": kind, **run_serve(Path(tmp), args.halts)}
        else:
            store: AuditStore
            if args.postgres:
                store = PostgresAuditStore(SecretStr(args.postgres))
                kind = "postgresql"
            else:
                store = SqliteAuditStore(Path(tmp) / "audit.db")
                kind = "sqlite"
            result = {"store": kind, **run(store, args.halts)}
            store.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['halts']} halts, 4 immediate groups, 5 channels, outbox on {kind}")
    for name, label, target in (
        ("first_attempt_ms", "first attempt (all groups)", 1000),
        ("received_ms", "received (all channels)", 5000),
    ):
        p = result[name]
        verdict = "ok" if p["p99"] <= target else "OVER TARGET"
        print(
            f"  {label:28} p50 {p['p50']:7.1f}  p95 {p['p95']:7.1f}  p99 {p['p99']:7.1f}  max {p['max']:7.1f} ms  (target p99 <= {target} ms: {verdict})"
        )


if __name__ == "__main__":
    main()
