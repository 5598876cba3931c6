"""What "may this request run?" costs per call: the guard against OpenFeature evaluations.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_guard.py                 # Markdown table
    .venv/bin/python benchmarks/bench_guard.py --json          # the same as JSON
    .venv/bin/python benchmarks/bench_guard.py --alternatives  # also time other ways to write the check

All paths are timed in one process, interleaved: each round times one batch
of every path in turn, so background noise lands on all of them alike. A
batch is a ``timeit`` loop sized to take about ``--batch-ms``; the per-call
time of a batch includes the loop overhead (about 5-10 ns here, see the
``pass`` row). The table gives the median and p95 over the batches, and each
median's ratio to ``guard.active``. Garbage collection stays enabled, as in a
service. Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import timeit
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from openfeature import api
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from breakglass.engine import StateEngine
from breakglass.guard import Guard
from breakglass.provider import SystemActiveProvider, register
from breakglass.relay.channel import ChannelReader, ChannelWriter, Snapshot
from breakglass.relay.source import RelaySource
from breakglass.state import Cause
from breakglass.testing import ScriptedSource

FLAG = "system-active"
BREAKGLASS_DOMAIN = "bench-breakglass"
IN_MEMORY_DOMAIN = "bench-in-memory"


@dataclass(frozen=True, slots=True)
class Case:
    """One way to ask the question: a label and the statement timed."""

    key: str
    label: str
    stmt: str
    headline: bool = True


@dataclass(frozen=True, slots=True)
class Row:
    """The timing of one path."""

    key: str
    label: str
    stmt: str
    calls_per_batch: int
    batches: int
    median_ns: float
    p95_ns: float
    min_ns: float
    ratio: float


HEADLINE = (
    Case("guard", "(a) breakglass `guard.active`", "guard.active"),
    Case(
        "guard-relay",
        "(a') breakglass `guard.active`, `relay` provider (channel read every 5 ms meanwhile)",
        "relay_guard.active",
    ),
    Case(
        "openfeature-breakglass",
        "(b) OpenFeature client -> breakglass `SystemActiveProvider`",
        "bg_client.get_boolean_value(FLAG, False)",
    ),
    Case(
        "openfeature-in-memory",
        "(c) OpenFeature client -> `InMemoryProvider`",
        "mem_client.get_boolean_value(FLAG, False)",
    ),
)

REFERENCE = (
    Case("loop", "reference: empty `timeit` loop (`pass`)", "pass", headline=False),
    Case("monotonic", "reference: `time.monotonic()`", "monotonic()", headline=False),
    Case(
        "inline",
        "reference: the check inlined, `monotonic() < engine.deadline`",
        "monotonic() < engine.deadline",
        headline=False,
    ),
)

ALTERNATIVES = (
    Case(
        "engine-active",
        "alternative: `engine.active` (via the Clock object)",
        "engine.active",
        headline=False,
    ),
    Case(
        "property-clock",
        "alternative: property calling `clock.monotonic()`",
        "via_clock.active",
        headline=False,
    ),
    Case(
        "method",
        "alternative: method `is_active()` (bound time.monotonic)",
        "as_method.is_active()",
        headline=False,
    ),
    Case(
        "property-one-step",
        "alternative: property, `self._monotonic()` in one step",
        "one_step.active",
        headline=False,
    ),
    Case(
        "property-global",
        "alternative: property using a module-global `time.monotonic`",
        "via_global.active",
        headline=False,
    ),
    Case(
        "property-dict",
        "alternative: property, no `__slots__`, `self._monotonic()` in one step",
        "no_slots.active",
        headline=False,
    ),
)


_monotonic = time.monotonic


class _ViaClock:
    """``guard.active`` written through the Clock object (one more Python frame)."""

    __slots__ = ("_clock", "_engine")

    def __init__(self, engine: StateEngine) -> None:
        self._engine = engine
        self._clock = engine.clock

    @property
    def active(self) -> bool:
        return self._clock.monotonic() < self._engine.deadline


class _AsMethod:
    """The same check as a method call instead of a property."""

    __slots__ = ("_engine", "_monotonic")

    def __init__(self, engine: StateEngine) -> None:
        self._engine = engine
        self._monotonic = time.monotonic

    def is_active(self) -> bool:
        return self._monotonic() < self._engine.deadline


class _OneStep:
    """The shipped property without the two-step call (LOAD_METHOD on a slot is not specialised)."""

    __slots__ = ("_engine", "_monotonic")

    def __init__(self, engine: StateEngine) -> None:
        self._engine = engine
        self._monotonic = time.monotonic

    @property
    def active(self) -> bool:
        return self._monotonic() < self._engine.deadline


class _ViaGlobal:
    """A property reading a module-global ``time.monotonic`` (cannot take a manual clock)."""

    __slots__ = ("_engine",)

    def __init__(self, engine: StateEngine) -> None:
        self._engine = engine

    @property
    def active(self) -> bool:
        return _monotonic() < self._engine.deadline


class _NoSlots:
    """The one-step property on a class with an instance ``__dict__``."""

    def __init__(self, engine: StateEngine) -> None:
        self._engine = engine
        self._monotonic = time.monotonic

    @property
    def active(self) -> bool:
        return self._monotonic() < self._engine.deadline


class _RelayWorker:
    """A worker behind a relay, in this process: a writer thread heartbeats the channel every
    50 ms and the worker's reading loop reads it every 5 ms, both while the check is timed."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-relay-")
        path = Path(self._dir.name) / "relay.channel"
        self.writer = ChannelWriter(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        source = RelaySource(
            ChannelReader(path), flag_key=FLAG, max_staleness=3600.0, poll_interval=0.005
        )
        self.engine = StateEngine(FLAG, [source], max_staleness=3600.0)
        self.engine.start()
        self.guard = Guard(self.engine)
        deadline = time.monotonic() + 10.0
        while not self.guard.active and time.monotonic() < deadline:
            time.sleep(0.01)

    def _beat(self) -> None:
        while not self._stop.wait(0.05):
            self.writer.write(
                Snapshot(
                    instance=self.writer.instance,
                    seq=0,
                    pid=os.getpid(),
                    active=True,
                    cause=Cause.ACTIVE,
                    remaining=3600.0,
                    written_wall=time.time(),
                    confirmed_wall=time.time(),
                    max_staleness=3600.0,
                    interval=0.05,
                    flag_key=FLAG,
                    source="bench",
                    detail="",
                )
            )

    def close(self) -> None:
        self.guard.close()
        self.engine.close()
        self._stop.set()
        self._thread.join()
        self.writer.close()
        self._dir.cleanup()


def _setup() -> tuple[dict[str, Any], StateEngine, Guard]:
    # The start-up and shutdown state changes are logged; they are not what is measured.
    logging.getLogger("breakglass").setLevel(logging.ERROR)
    source = ScriptedSource("bench")
    # An hour of freshness: the flag must stay active for the whole run without a recompute.
    engine = StateEngine(FLAG, [source], max_staleness=3600.0)
    engine.start()
    source.confirm(value=True)
    guard = Guard(engine)
    provider = SystemActiveProvider(engine, owns_engine=False)
    register(provider, BREAKGLASS_DOMAIN)
    api.set_provider_and_wait(
        InMemoryProvider({FLAG: InMemoryFlag("on", {"on": True, "off": False})}),
        domain=IN_MEMORY_DOMAIN,
    )
    env: dict[str, Any] = {
        "FLAG": FLAG,
        "guard": guard,
        "relay_worker": (relay := _RelayWorker()),
        "relay_guard": relay.guard,
        "engine": engine,
        "monotonic": time.monotonic,
        "bg_client": api.get_client(BREAKGLASS_DOMAIN),
        "mem_client": api.get_client(IN_MEMORY_DOMAIN),
        "via_clock": _ViaClock(engine),
        "as_method": _AsMethod(engine),
        "one_step": _OneStep(engine),
        "via_global": _ViaGlobal(engine),
        "no_slots": _NoSlots(engine),
    }
    # Every path must answer True before it is timed: a fast wrong answer is worth nothing.
    for path in (*HEADLINE, *ALTERNATIVES):
        answer = eval(path.stmt, env)  # noqa: S307 -- our own fixed statements
        if answer is not True:
            sys.exit(f"{path.label} answered {answer!r}, not True; not timing it")
    return env, engine, guard


def _calibrate(timer: timeit.Timer, batch_seconds: float) -> int:
    number = 100
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= batch_seconds / 4:
            return max(1, int(number * batch_seconds / elapsed))
        number *= 4


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def measure(paths: list[Case], env: dict[str, Any], *, batches: int, batch_ms: float) -> list[Row]:
    """Time every path in interleaved rounds; return one row per path."""
    gc.enable()
    timers = {path.key: timeit.Timer(path.stmt, globals=env) for path in paths}
    numbers = {key: _calibrate(timer, batch_ms / 1000) for key, timer in timers.items()}
    samples: dict[str, list[float]] = {path.key: [] for path in paths}
    for _ in range(batches):
        for path in paths:
            number = numbers[path.key]
            samples[path.key].append(timers[path.key].timeit(number) * 1e9 / number)
    base = statistics.median(samples["guard"])
    rows = []
    for path in paths:
        values = samples[path.key]
        median = statistics.median(values)
        rows.append(
            Row(
                key=path.key,
                label=path.label,
                stmt=path.stmt,
                calls_per_batch=numbers[path.key],
                batches=len(values),
                median_ns=round(median, 1),
                p95_ns=round(_percentile(values, 0.95), 1),
                min_ns=round(min(values), 1),
                ratio=round(median / base, 2),
            )
        )
    return rows


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| path | statement | median ns/call | p95 ns/call | min ns/call | x guard.active |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.label} | `{r.stmt}` | {r.median_ns:,.1f} | {r.p95_ns:,.1f} | {r.min_ns:,.1f} | {r.ratio:,.2f}x |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=60, help="batches per path (default 60)")
    parser.add_argument(
        "--batch-ms", type=float, default=20.0, help="target milliseconds per batch (default 20)"
    )
    parser.add_argument(
        "--alternatives", action="store_true", help="also time other ways to write the check"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)

    env, engine, guard = _setup()
    paths = [*HEADLINE, *REFERENCE, *(ALTERNATIVES if args.alternatives else ())]
    try:
        rows = measure(paths, env, batches=args.batches, batch_ms=args.batch_ms)
    finally:
        api.shutdown()
        guard.close()
        engine.close()
        env["relay_worker"].close()
    context = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": _cpus(),
        "openfeature_sdk": metadata.version("openfeature-sdk"),
        "batches": args.batches,
        "batch_ms": args.batch_ms,
    }
    if args.json:
        print(json.dumps({"context": context, "rows": [asdict(r) for r in rows]}, indent=2))
        return
    print(
        f"Python {context['python']} ({context['implementation']}, {context['machine']}, "
        f"{context['cpus']} CPUs), openfeature-sdk {context['openfeature_sdk']}; "
        f"{args.batches} interleaved batches of ~{args.batch_ms:g} ms per path, gc enabled.\n"
    )
    print(markdown(rows))


def _cpus() -> int | None:
    return os.cpu_count()


if __name__ == "__main__":
    main()
