"""The demo drill: a guarded sample inference service under load is halted, drained and resumed.

Everything is real and on loopback: the embedded local provider's SQLite
store, a uvicorn server running an ASGI "inference" app behind
:class:`breakglass.middleware.GuardMiddleware`, and httpx clients keeping it
busy. The drill measures how long the halt takes to reach the guard and checks
that nothing in flight is dropped and that nothing new gets through.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.bridge import Bridge
from breakglass.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from breakglass.guard import Guard
    from breakglass.state import FlagState

ACTOR = "breakglass-demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How hard and how long the drill runs."""

    concurrency: int = 16
    work_ms: int = 150
    load_seconds: float = 1.5
    halted_seconds: float = 0.6
    max_halt_ms: float = 100.0
    state_dir: Path | None = None


@dataclass(slots=True)
class _Request:
    started: float
    ended: float
    status: int | None
    notice: dict[str, Any] | None = None
    error: str | None = None


@dataclass(slots=True)
class DemoReport:
    """What the drill measured; :attr:`passed` says whether every check held."""

    provider: str = "local"
    concurrency: int = 0
    work_ms: int = 0
    halt_latency_ms: float | None = None
    first_refusal_ms: float | None = None
    in_flight_at_halt: int = 0
    drained: int = 0
    dropped: int = 0
    refused: int = 0
    leaked: int = 0
    served: int = 0
    resumed: bool = False
    resume_latency_ms: float | None = None
    requests: int = 0
    max_halt_ms: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every check held."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "provider": self.provider,
            "concurrency": self.concurrency,
            "work_ms": self.work_ms,
            "requests": self.requests,
            "served": self.served,
            "halt_latency_ms": self.halt_latency_ms,
            "first_refusal_ms": self.first_refusal_ms,
            "in_flight_at_halt": self.in_flight_at_halt,
            "drained": self.drained,
            "dropped": self.dropped,
            "refused": self.refused,
            "leaked": self.leaked,
            "resumed": self.resumed,
            "resume_latency_ms": self.resume_latency_ms,
            "max_halt_ms": self.max_halt_ms,
            "passed": self.passed,
            "problems": self.problems,
        }

    def summary(self) -> str:
        """The report for people."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        lines = [
            f"breakglass demo: {self.provider} provider, {self.concurrency} clients, "
            f"{self.work_ms} ms per inference, {self.requests} requests",
            f"  halt acknowledged -> guard refusing   {ms(self.halt_latency_ms):>10}  (bound {self.max_halt_ms:g} ms)",
            f"  halt acknowledged -> first 503 seen   {ms(self.first_refusal_ms):>10}",
            f"  in flight at the halt {self.in_flight_at_halt}, drained {self.drained}, dropped {self.dropped}",
            f"  refused while halted {self.refused} (503 service_suspended), let through {self.leaked}",
            f"  resume acknowledged -> serving again  {ms(self.resume_latency_ms):>10}  resumed: {'yes' if self.resumed else 'NO'}",
        ]
        lines.extend(f"  problem: {p}" for p in self.problems)
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


def inference_app(work_seconds: float) -> Callable[..., Awaitable[None]]:
    """A sample ASGI "inference" service: each request takes ``work_seconds``."""

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        del receive  # the sample app ignores the request body
        if scope["type"] != "http":
            return
        await asyncio.sleep(work_seconds)  # stands in for a model's forward pass
        body = b'{"result": "a completion"}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


class SampleServer:
    """uvicorn on 127.0.0.1, on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="error", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="demo-uvicorn", daemon=True)

    def start(self) -> str:
        """Start it; its endpoint's URL."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the sample service did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/infer"

    def stop(self) -> None:
        """Stop it (requests in flight finish first)."""
        self._server.should_exit = True
        self._thread.join(timeout=10)


class _Drill:
    def __init__(self, bridge: Bridge, guard: Guard, options: DemoOptions) -> None:
        self.bridge = bridge
        self.guard = guard
        self.options = options
        self.requests: list[_Request] = []
        self.flips: list[tuple[bool, float, int]] = []
        self.stop = asyncio.Event()
        bridge.engine.subscribe(self._on_state)

    def _on_state(self, state: FlagState) -> None:
        self.flips.append((state.active, time.monotonic(), self.guard.stats().in_flight))

    async def client(self, http: Any, url: str) -> None:
        import httpx

        while not self.stop.is_set():
            started = time.monotonic()
            try:
                response = await http.post(url, json={"prompt": "hello"})
            except httpx.HTTPError as exc:
                self.requests.append(_Request(started, time.monotonic(), None, error=repr(exc)))
                continue
            notice = response.json() if response.status_code == 503 else None
            self.requests.append(_Request(started, time.monotonic(), response.status_code, notice))
            if response.status_code == 503:
                await asyncio.sleep(0.02)  # a polite client backs off; this one only briefly

    async def wait_flip(self, *, active: bool, after: float) -> float | None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for flip_active, at, _ in self.flips:
                if flip_active is active and at >= after:
                    return at
            await asyncio.sleep(0.001)
        return None


async def _drive(
    drill: _Drill, url: str, report: DemoReport, say: Callable[[str], None]
) -> dict[str, float | None]:
    import httpx

    options = drill.options
    limits = httpx.Limits(max_connections=options.concurrency + 4)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        clients = [asyncio.create_task(drill.client(http, url)) for _ in range(options.concurrency)]
        say(f"sending load: {options.concurrency} clients for {options.load_seconds:g} s")
        await asyncio.sleep(options.load_seconds)

        say("halting through the local provider (as `breakglass halt` would)")
        ack = await asyncio.to_thread(drill.bridge.halt, actor=ACTOR, reason="demo drill: halt")
        acked = time.monotonic()
        del ack
        halted_at = await drill.wait_flip(active=False, after=acked - 1.0)
        await asyncio.sleep(options.halted_seconds)

        say("draining requests that were in flight")
        drain = await asyncio.to_thread(drill.guard.drain, 10.0)
        if drain.remaining:
            report.problems.append(f"{drain.remaining} requests still in flight after 10 s")

        say("resuming")
        resume_started = time.monotonic()
        await asyncio.to_thread(drill.bridge.resume, actor=ACTOR, reason="demo drill: resume")
        resumed_acked = time.monotonic()
        resumed_at = await drill.wait_flip(active=True, after=resume_started)
        await asyncio.sleep(max(0.5, options.work_ms / 1000 * 3))
        drill.stop.set()
        await asyncio.gather(*clients)
    return {
        "acked": acked,
        "halted_at": halted_at,
        "resume_started": resume_started,
        "resumed_acked": resumed_acked,
        "resumed_at": resumed_at,
    }


def _judge(drill: _Drill, marks: dict[str, float | None], report: DemoReport) -> None:
    acked, halted_at = marks["acked"], marks["halted_at"]
    resume_started, resumed_at = marks["resume_started"], marks["resumed_at"]
    assert acked is not None  # noqa: S101 -- always set by _drive
    assert resume_started is not None  # noqa: S101
    requests = drill.requests
    report.requests = len(requests)
    report.dropped = sum(1 for r in requests if r.status not in (200, 503))
    report.refused = sum(1 for r in requests if r.status == 503)
    report.served = sum(1 for r in requests if r.status == 200)
    stats = drill.guard.stats()
    report.drained = stats.drained
    if halted_at is None:
        report.problems.append("the guard never started refusing")
    else:
        report.halt_latency_ms = round(max(0.0, halted_at - acked) * 1000, 1)
        report.in_flight_at_halt = next(n for a, at, n in drill.flips if not a and at == halted_at)
        refusals = [r.ended for r in requests if r.status == 503]
        if refusals:
            report.first_refusal_ms = round(max(0.0, min(refusals) - acked) * 1000, 1)
        # Sent after the guard flipped and answered before it flipped back: the server admitted
        # it while halted, so it must have been refused.
        back = resumed_at if resumed_at is not None else float("inf")
        report.leaked = sum(
            1 for r in requests if r.status == 200 and r.started > halted_at and r.ended < back
        )
        if report.halt_latency_ms > report.max_halt_ms:
            report.problems.append(
                f"halting took {report.halt_latency_ms} ms, over the {report.max_halt_ms:g} ms bound"
            )
    if resumed_at is not None:
        report.resume_latency_ms = round(max(0.0, resumed_at - resume_started) * 1000, 1)
        report.resumed = any(r.status == 200 and r.started > resumed_at for r in requests)
    if not report.resumed:
        report.problems.append("the service did not serve again after the resume")
    if report.dropped:
        report.problems.append(f"{report.dropped} requests failed without a 200 or a 503")
    if report.leaked:
        report.problems.append(f"{report.leaked} requests got through while halted")
    if report.refused == 0:
        report.problems.append("no request was refused while halted")
    bad_notices = [
        r
        for r in requests
        if r.status == 503 and (r.notice or {}).get("error") != "service_suspended"
    ]
    if bad_notices:
        report.problems.append(f"{len(bad_notices)} refusals lacked the service_suspended notice")
    if report.drained < report.in_flight_at_halt:
        report.problems.append(
            f"{report.in_flight_at_halt} requests were in flight at the halt but {report.drained} drained"
        )


def run_demo(options: DemoOptions, progress: Callable[[str], Any] | None = None) -> DemoReport:
    """Run the drill once and return what it measured (never raises for a failed check)."""
    from breakglass.middleware import GuardMiddleware

    def say(text: str) -> None:
        if progress is not None:
            progress(f"demo: {text}")

    owned = options.state_dir is None
    state_dir = (
        Path(tempfile.mkdtemp(prefix="breakglass-demo-")) if owned else Path(str(options.state_dir))
    )
    report = DemoReport(
        concurrency=options.concurrency, work_ms=options.work_ms, max_halt_ms=options.max_halt_ms
    )
    try:
        settings = Settings(provider="local", state_dir=state_dir)
        bridge = Bridge.from_settings(settings)
        say(f"local provider store: {settings.local_file}")
        bridge.resume(actor=ACTOR, reason="demo drill: start the sample service")
        with bridge:
            if bridge.engine.wait_for_confirmation(5.0).active is False:
                report.problems.append(f"the flag did not read active: {bridge.engine.state}")
                return report
            guard = bridge.guard()
            server = SampleServer(GuardMiddleware(inference_app(options.work_ms / 1000), guard))
            url = server.start()
            say(f"sample inference service on {url}")
            try:
                drill = _Drill(bridge, guard, options)
                marks = asyncio.run(_drive(drill, url, report, say))
            finally:
                server.stop()
            _judge(drill, marks, report)
    finally:
        if owned:
            shutil.rmtree(state_dir, ignore_errors=True)
    return report
