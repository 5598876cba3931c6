"""Holding pending decisions: a real service process holds what it decides while halted, is killed
with SIGKILL mid-stream and restarted, and after the gated resume the review releases some
(delivered once each by the restarted service) and discards the others, each with actor and reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from breakglass.hold import HoldQueue, HoldStore
from breakglass.hold.store import HoldError
from breakglass.serve.store import SqliteServeStore
from breakglass.testing.serve import FLAG, Running, running_serve
from tests.notify_receivers import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[1]
POLICY = "[resume]\napprovals = 1\nchecklist = []\n"


class Service:
    """tests/hold_service.py as a process."""

    def __init__(self, root: Path) -> None:
        env = {
            **os.environ,
            "BREAKGLASS_PROVIDER": "local",
            "BREAKGLASS_FLAG_KEY": FLAG,
            "BREAKGLASS_STATE_DIR": str(root / "service-state"),
            "BREAKGLASS_LOCAL__PATH": str(root / "local.db"),
            "BREAKGLASS_LOCAL__POLL_INTERVAL": "0.02",
            "BREAKGLASS_SERVE__PATH": str(root / "serve.db"),
        }
        self.delivered = root / "delivered.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hold_service", str(self.delivered)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            raise AssertionError(f"the service did not start: {line}{self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def decide(self, client: httpx.Client, applicant: str) -> dict[str, Any]:
        answer: dict[str, Any] = client.post(
            f"{self.url}/decide", json={"applicant": applicant}
        ).json()
        return answer

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def deliveries(self) -> list[dict[str, Any]]:
        if not self.delivered.exists():
            return []
        return [json.loads(line) for line in self.delivered.read_text().splitlines()]


@pytest.fixture
def gated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(tmp_path / "policy.toml"))
    with running_serve(tmp_path) as running:
        assert running.wait_active(True)
        yield running


def test_held_decisions_survive_kill_9_and_are_released_after_review(  # noqa: PLR0915 -- one story
    gated: Running, tmp_path: Path
) -> None:
    service = Service(tmp_path)
    try:
        with httpx.Client(timeout=30) as c:
            assert service.decide(c, "a-0") == {"held": False}  # active: delivered at once
            assert [d["payload"]["applicant"] for d in service.deliveries()] == ["a-0"]

            with gated.client("halter") as halter:
                sid = halter.post("/v1/halt", json={"reason": "score drift"}).json()[
                    "suspension_id"
                ]
            assert wait_until(lambda: service.decide(c, "probe")["held"], timeout=10)

            # A stream of decisions while halted; SIGKILL lands in the middle of it.
            tickets: list[str] = []
            stop = threading.Event()

            def stream() -> None:
                n = 0
                with httpx.Client(timeout=5) as s:
                    while not stop.is_set():
                        n += 1
                        try:
                            answer = service.decide(s, f"b-{n}")
                        except httpx.HTTPError:
                            return  # the process is gone: what was answered is what counts
                        tickets.append(answer["ticket"])

            sender = threading.Thread(target=stream)
            sender.start()
            assert wait_until(lambda: len(tickets) >= 15, timeout=20)
            scored = c.post(
                f"{service.url}/v1/score",
                content=b'{"applicant": "c-1"}',
                headers={"content-type": "application/json"},
            )
            assert scored.status_code == 202, scored.text
            assert scored.json()["status"] == "held"
            tickets.append(scored.json()["ticket"])
            service.kill9()
            stop.set()
            sender.join(10)
        answered = list(tickets)
        print(f"{len(answered)} decisions answered as held before SIGKILL")

        # Every decision the service answered as held is in the store, after the kill...
        with gated.client("viewer") as viewer:
            held = {h["ticket"]: h for h in viewer.get("/v1/held").json()["decisions"]}
        missing = [t for t in answered if t not in held]
        assert not missing, f"lost across kill -9: {missing}"
        assert held[scored.json()["ticket"]]["payload"]["method"] == "POST"
        # ... and after a restart of the service, which delivers nothing while halted.
        service = Service(tmp_path)
        time.sleep(0.5)
        # A "probe" sent before the service saw the halt was delivered as it should be.
        delivered = [d["payload"]["applicant"] for d in service.deliveries()]
        assert [a for a in delivered if a != "probe"] == ["a-0"]

        with gated.client("approver") as approver:
            # Releasing before the gated resume is refused.
            early = approver.post("/v1/held/release", json={"tickets": None, "reason": "now"})
            assert early.status_code == 409
            assert "halted" in early.json()["detail"]
            assert approver.post("/v1/resume/approvals", json={}).status_code == 200
            resumed = approver.post(
                "/v1/resume", json={"reason": "drift explained", "classification": "precautionary"}
            )
            assert resumed.status_code == 200, resumed.text
            assert gated.wait_active(True)
            keep = answered[: len(answered) // 2]
            drop = sorted(set(held) - set(keep))
            with gated.client("viewer") as viewer:
                assert (
                    viewer.post(
                        "/v1/held/release", json={"tickets": keep, "reason": "x"}
                    ).status_code
                    == 403
                )
            released = approver.post(
                "/v1/held/release", json={"tickets": keep, "reason": "reviewed: scores valid"}
            )
            assert released.status_code == 200, released.text
            assert sorted(released.json()["changed"]) == sorted(keep)
            discarded = approver.post(
                "/v1/held/discard", json={"tickets": None, "reason": "re-score after the fix"}
            )
            assert sorted(discarded.json()["changed"]) == drop
            # Reviewed once: a second review changes nothing.
            again = approver.post("/v1/held/discard", json={"tickets": keep, "reason": "oops"})
            assert again.json()["changed"] == []

        # The restarted service delivers exactly the released ones, once each.
        def delivered_tickets() -> list[str]:
            return [d["ticket"] for d in service.deliveries() if d["ticket"]]

        assert wait_until(lambda: len(delivered_tickets()) >= len(keep), timeout=15)
        time.sleep(0.5)
        assert sorted(delivered_tickets()) == sorted(keep)
        store = HoldStore(SqliteServeStore(tmp_path / "serve.db"))
        for ticket in keep:
            h = store.get(ticket)
            assert h is not None
            assert h.state == "delivered"
            assert h.reviewed_by == "token:approver-1"
            assert h.review_reason == "reviewed: scores valid"
        for ticket in drop:
            h = store.get(ticket)
            assert h is not None
            assert h.state == "discarded"
            assert h.review_reason == "re-score after the fix"
        with gated.client("viewer") as viewer:
            record = viewer.get(f"/v1/suspensions/{sid}").json()
        assert record["held"]["total"] == len(held)
        assert record["held"]["released"] == len(keep)
        assert record["held"]["discarded"] == len(drop)
    finally:
        service.stop()


def test_hold_fails_closed_and_is_idempotent(tmp_path: Path) -> None:
    class Halted:
        active = False

    store = HoldStore(SqliteServeStore(tmp_path / "serve.db"))
    queue = HoldQueue(store, Halted())
    first = queue.submit("letter", {"to": "a"}, key="letter-a")
    again = queue.submit("letter", {"to": "a"}, key="letter-a")
    assert first.ticket == again.ticket
    assert not first.released
    with pytest.raises(HoldError):
        queue.submit("letter", {"not json": object()})
    # A store that cannot be written: the decision is NOT delivered and the caller is told.
    (tmp_path / "ro").mkdir()
    broken = HoldQueue(
        HoldStore(SqliteServeStore(tmp_path / "ro" / "no" / "such" / "dir" / "x.db")), Halted()
    )
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.geteuid() == 0:
            broken = HoldQueue(HoldStore(SqliteServeStore(Path("/proc/version/x.db"))), Halted())
        with pytest.raises(HoldError, match="NOT delivered"):
            broken.submit("letter", {"to": "b"})
    finally:
        os.chmod(tmp_path / "ro", 0o700)
