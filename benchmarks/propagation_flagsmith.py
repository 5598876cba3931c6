"""Propagation on Flagsmith: admin toggle acknowledged -> breakglass engine halted (and resumed).

Starts the adapter's Flagsmith-protocol server on loopback (the one its tests
use: ``providers/breakglass-flagsmith/tests/flagsmith_tests/server.py``, built
from payloads captured from a real Flagsmith). The reader is the real
``flagsmith`` SDK in local evaluation, driven by ``FlagsmithSource``. Each round
turns the flag off through the management API (``PATCH …/featurestates/{id}/``),
waits for the engine to halt (the guard refuses from that moment: it reads the
engine's deadline), turns it on, waits for it to resume, with a random pause so
rounds do not lock onto the refresh.

    .venv/bin/python benchmarks/propagation_flagsmith.py -n 50 --json results.json

Times (milliseconds): ``propagation`` = engine changed - write acknowledged;
``end_to_end`` = engine changed - write started. Rounds that time out are
counted, never dropped. With ``--readers N`` every round waits for the last of
N independent readers (fleet mode). The load each reader puts on the API is
measured from the server's own request counter.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from breakglass.engine import StateEngine
from breakglass_flagsmith import FlagsmithAdmin, FlagsmithSettings, FlagsmithSource

# The shared helpers are imported as `benchmarks._propagation` (the name mypy gives them),
# which needs the repository root on the path when this file is run as a script.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._propagation import Watch, summarise  # noqa: E402

TESTS = ROOT / "providers" / "breakglass-flagsmith" / "tests"
sys.path.insert(0, str(TESTS))

from flagsmith_tests.server import FEATURE, FlagsmithServer  # noqa: E402 -- after the path


def wait_all(watches: list[Watch], *, active: bool, timeout: float) -> float | None:
    """When the last of the readers changed, or ``None`` if one did not within ``timeout``."""
    deadline = time.monotonic() + timeout
    moments = []
    for watch in watches:
        moment = watch.wait(active=active, timeout=max(0.0, deadline - time.monotonic()))
        if moment is None:
            return None
        moments.append(moment)
    return max(moments)


def run(
    server: FlagsmithServer, settings: FlagsmithSettings, rounds: int, readers: int, seed: int
) -> dict[str, Any]:
    admin = FlagsmithAdmin(settings, FEATURE)
    engines = [
        StateEngine(FEATURE, [FlagsmithSource(settings, FEATURE)], max_staleness=30.0)
        for _ in range(readers)
    ]
    watches = [Watch(engine) for engine in engines]
    for engine in engines:
        engine.start()
    timeout = 5.0 + settings.poll_bound
    rng = random.Random(seed)  # noqa: S311 -- phase jitter, not crypto
    results: dict[str, dict[str, list[float]]] = {
        "halt": {"propagation": [], "end_to_end": [], "ack": []},
        "resume": {"propagation": [], "end_to_end": [], "ack": []},
    }
    timeouts = {"halt": 0, "resume": 0}
    try:
        if wait_all(watches, active=True, timeout=timeout) is None:
            raise SystemExit(f"the readers never became active: {[e.state for e in engines]}")
        server.reset_counters()
        load_started = time.monotonic()
        for index in range(rounds):
            for kind, target in (("halt", False), ("resume", True)):
                time.sleep(rng.uniform(0.05, 0.05 + settings.refresh_interval))
                started = time.monotonic()
                admin.set_active(target, actor="benchmark", reason=f"round {index} {kind}")
                acked = time.monotonic()
                changed = wait_all(watches, active=target, timeout=timeout)
                if changed is None:
                    timeouts[kind] += 1
                    print(f"#{index:02d} {kind:6s} TIMEOUT after {timeout:g} s", flush=True)
                    continue
                if not target:
                    assert not any(engine.active for engine in engines), "a guard still admits"
                row = results[kind]
                row["propagation"].append((changed - acked) * 1000)
                row["end_to_end"].append((changed - started) * 1000)
                row["ack"].append((acked - started) * 1000)
                print(
                    f"#{index:02d} {kind:6s} ack {row['ack'][-1]:6.1f} ms  "
                    f"propagation {row['propagation'][-1]:7.1f} ms",
                    flush=True,
                )
        elapsed = time.monotonic() - load_started
        fetches = server.counters.by_kind.get("environment-document", 0)
    finally:
        for engine in engines:
            engine.close()
        admin.close()
    document_bytes = len(json.dumps(server.document()).encode())
    per_reader = fetches / elapsed / readers
    return {
        "provider": "flagsmith",
        "server": "breakglass-flagsmith protocol server on loopback (real flagsmith SDK as client)",
        "rounds": rounds,
        "readers": readers,
        "settings": {
            "mode": settings.mode,
            "refresh_interval": settings.refresh_interval,
            "request_timeout": settings.request_timeout,
            "server_latency_ms": round(server.latency * 1000, 1),
        },
        "load_per_reader": {
            "environment_document_req_per_s": round(per_reader, 2),
            "req_per_day": round(per_reader * 86400),
            "document_bytes": document_bytes,
        },
        "halt_ms": {k: summarise(v, timeouts["halt"]) for k, v in results["halt"].items()},
        "resume_ms": {k: summarise(v, timeouts["resume"]) for k, v in results["resume"].items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--rounds", type=int, default=50)
    parser.add_argument("--readers", type=int, default=1, help="independent readers (fleet mode)")
    parser.add_argument(
        "--refresh-interval", type=float, default=None, help="default: the adapter's (0.2 s)"
    )
    parser.add_argument("--mode", choices=["local", "remote"], default="local")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added by the server before every answer"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args()

    server = FlagsmithServer().start()
    server.latency = args.latency_ms / 1000
    overrides: dict[str, Any] = {"mode": args.mode}
    if args.refresh_interval is not None:
        overrides["refresh_interval"] = args.refresh_interval
    settings = FlagsmithSettings(
        api_url=server.api_url,
        environment_key=SecretStr(server.server_key),
        admin_token=SecretStr(f"Api-Key {server.master_key}"),
        project_id=server.project["id"],
        environment_api_key=server.client_key,
        **overrides,
    )
    try:
        summary = run(server, settings, args.rounds, args.readers, args.seed)
    finally:
        server.stop()
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    halt = summary["halt_ms"]["propagation"]
    return (
        0
        if halt.get("timeouts", 0) == 0
        and summary["resume_ms"]["propagation"].get("timeouts", 0) == 0
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
