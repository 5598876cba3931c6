"""A halt through serve's API, timed to the guard of a separate reader process.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_serve_halt.py               # 100 halts each way
    .venv/bin/python benchmarks/bench_serve_halt.py --rounds 300 --json

Three processes on one host, all on the embedded ``local`` provider (one
SQLite flag store, read every 20 ms):

* ``breakglass serve`` (the real command, on uvicorn), holding the admin side;
* one reader (``python -m breakglass.probe.reader``), a bridge and a guard as an
  inference service has them, printing the shared monotonic time at which its
  guard starts refusing;
* this script, which halts and resumes.

Each round turns the flag back on, waits until the reader admits again, waits
a random 0-40 ms (so halts do not lock onto the reader's polling phase), then
halts one of two ways, alternating:

* **api**: ``POST /v1/halt`` with a halter token on a kept-alive connection;
* **direct**: the provider's own write (``LocalStore.write``), which is what
  the provider's propagation alone costs.

Latency is the reader's refusal time minus the moment just before the halt
was sent. The question: is the API's p99 within 100 ms of the direct p99?
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from breakglass.local.store import LocalStore
from breakglass.probe.wire import Kind, ReaderEvent, parse

FLAG = "system-active"
BUDGET_MS = 100.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Reader:
    """The reader process and a queue of its events."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 -- this interpreter, fixed arguments
            [sys.executable, "-m", "breakglass.probe.reader", "--settings", json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[ReaderEvent] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(parse(line))

    def wait(self, *, active: bool, timeout: float = 10.0) -> ReaderEvent:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event.kind is Kind.ERROR:
                raise RuntimeError(f"reader: {event.text}")
            if event.active == active:
                return event

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def _start_serve(env: dict[str, str], cwd: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(  # noqa: S603 -- the installed command, fixed arguments
        [str(Path(sys.executable).with_name("breakglass")), "serve"],
        env={**env, "BREAKGLASS_SERVE__PORT": str(port)},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    token = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if line.strip().startswith("bgt_"):
            token = line.strip()
        if "console and API on" in line:
            break
        if not line and proc.poll() is not None:
            raise RuntimeError("breakglass serve exited at start")
    threading.Thread(target=lambda: [None for _ in proc.stderr or ()], daemon=True).start()
    return proc, token


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50_ms": round(pct(50), 1),
        "p95_ms": round(pct(95), 1),
        "p99_ms": round(pct(99), 1),
        "max_ms": round(ordered[-1], 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
    }


def run(rounds: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    flags = LocalStore(root / "local.db")
    flags.write(FLAG, value=True, actor="bench", reason="start")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env |= {
        "BREAKGLASS_PROVIDER": "local",
        "BREAKGLASS_LOCAL__PATH": str(root / "local.db"),
        "BREAKGLASS_STATE_DIR": str(root / "serve-state"),
    }
    port = _free_port()
    serve, admin = _start_serve(env, root, port)
    reader = Reader(
        {
            "provider": "local",
            "state_dir": str(root / "reader-state"),
            "local": {"path": str(root / "local.db"), "poll_interval": 0.02},
        }
    )
    results: dict[str, list[float]] = {"api": [], "direct": []}
    acks: list[float] = []
    try:
        reader.wait(active=True, timeout=30)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        ) as client:
            client.get("/v1/status").raise_for_status()  # warm the connection and the token list
            for i in range(rounds * 2):
                mode = "api" if i % 2 == 0 else "direct"
                flags.write(FLAG, value=True, actor="bench", reason="next round")
                reader.wait(active=True)
                time.sleep(random.uniform(0, 0.04))  # noqa: S311 -- jitter, not crypto
                t0 = time.monotonic()
                if mode == "api":
                    answer = client.post("/v1/halt", json={"reason": f"bench round {i}"})
                    acks.append((time.monotonic() - t0) * 1000)
                    if answer.status_code != 200:
                        raise RuntimeError(f"halt answered {answer.status_code}: {answer.text}")
                else:
                    flags.write(FLAG, value=False, actor="bench", reason=f"bench round {i}")
                halted = reader.wait(active=False)
                results[mode].append((halted.at - t0) * 1000)
    finally:
        reader.close()
        serve.send_signal(signal.SIGTERM)
        serve.wait(15)
    api, direct = _stats(results["api"]), _stats(results["direct"])
    return {
        "rounds": rounds,
        "api": api,
        "direct": direct,
        "api_answer": _stats(acks),
        "p99_difference_ms": round(api["p99_ms"] - direct["p99_ms"], 1),
        "budget_ms": BUDGET_MS,
        "within_budget": api["p99_ms"] - direct["p99_ms"] <= BUDGET_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="Halts each way.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args()
    report = run(args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['rounds']} halts each way; reader polls the local store every 20 ms\n")
        print("| path | n | p50 ms | p95 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|---|")
        for name, label in (
            ("direct", "provider write -> reader refuses"),
            ("api", "POST /v1/halt -> reader refuses"),
            ("api_answer", "POST /v1/halt -> answer"),
        ):
            s = report[name]
            print(
                f"| {label} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} | {s['max_ms']} |"
            )
        verdict = "within" if report["within_budget"] else "OVER"
        print(
            f"\np99 through the API minus p99 of the provider alone: "
            f"{report['p99_difference_ms']} ms ({verdict} the {BUDGET_MS:g} ms budget)"
        )
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
