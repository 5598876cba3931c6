"""Propagation on LaunchDarkly: REST toggle acknowledged -> breakglass guard refusing (and resuming).

Runs the LaunchDarkly-protocol server of the adapter's tests
(``providers/breakglass-launchdarkly/tests/launchdarkly_tests/fake_ld.py``) in its own process on
loopback, unless ``--url`` points at a running one (keys from
``BREAKGLASS_LAUNCHDARKLY__SDK_KEY`` / ``__API_TOKEN``). The reader is the real
``ldclient`` SDK on the stream, through the adapter and a full ``Bridge``.
Each round turns the flag off with a semantic patch, waits until the guard
refuses, turns it on, waits until the guard admits again, with a random pause
between rounds.

    .venv/bin/python benchmarks/propagation_launchdarkly.py -n 60 --json results.json

Times (milliseconds): ``propagation`` = guard changed - write acknowledged;
``end_to_end`` = guard changed - write started; ``ack`` = the REST call itself.
"Guard changed" is the engine's change notification, which it sends after
moving the deadline the guard compares with, so the guard refuses from that
instant. Rounds that time out are counted, never dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from breakglass.bridge import Bridge
from breakglass.settings import Settings

# The shared helpers are imported as `benchmarks._propagation` (the name mypy gives them),
# which needs the repository root on the path when this file is run as a script.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._propagation import Watch, summarise  # noqa: E402

FAKE = (
    ROOT / "providers" / "breakglass-launchdarkly" / "tests" / "launchdarkly_tests" / "fake_ld.py"
)
FLAG = "system-active"
TARGET_P99_MS = 50.0


def run(rounds: int, timeout: float, seed: int) -> dict[str, Any]:
    state_dir = Path(tempfile.mkdtemp(prefix="bg-ld-bench-"))
    bridge = Bridge.from_settings(
        Settings(provider="launchdarkly", flag_key=FLAG, max_staleness=30.0, state_dir=state_dir)
    )
    watch = Watch(bridge.engine)
    guard = bridge.guard()
    bridge.start()
    rng = random.Random(seed)  # noqa: S311 -- phase jitter, not crypto
    results: dict[str, dict[str, list[float]]] = {
        "halt": {"propagation": [], "end_to_end": [], "ack": []},
        "resume": {"propagation": [], "end_to_end": [], "ack": []},
    }
    timeouts = {"halt": 0, "resume": 0}
    try:
        bridge.resume(actor="benchmark", reason="start")
        if watch.wait(active=True, timeout=timeout) is None:
            raise SystemExit(f"the bridge never became active: {bridge.engine.state}")
        for index in range(rounds):
            for kind, target in (("halt", False), ("resume", True)):
                time.sleep(rng.uniform(0.02, 0.08))
                started = time.monotonic()
                bridge.admin.set_active(target, actor="benchmark", reason=f"round {index} {kind}")
                acked = time.monotonic()
                changed = watch.wait(active=target, timeout=timeout)
                if changed is None or guard.active is not target:
                    timeouts[kind] += 1
                    print(f"#{index:02d} {kind:6s} TIMEOUT after {timeout:g} s", flush=True)
                    continue
                row = results[kind]
                row["propagation"].append((changed - acked) * 1000)
                row["end_to_end"].append((changed - started) * 1000)
                row["ack"].append((acked - started) * 1000)
    finally:
        bridge.close()
    settings = bridge.backend.source
    return {
        "provider": "launchdarkly",
        "transport": "SSE stream (ldclient 9.x) from a LaunchDarkly-protocol server on loopback",
        "rounds": rounds,
        "verify_interval_s": getattr(settings, "verify_interval", None),
        "target_p99_ms": TARGET_P99_MS,
        "halt_ms": {
            k: summarise(v, timeouts["halt"], digits=2) for k, v in results["halt"].items()
        },
        "resume_ms": {
            k: summarise(v, timeouts["resume"], digits=2) for k, v in results["resume"].items()
        },
    }


def start_fake() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The fake server in its own process; returns it and the settings it printed."""
    process = subprocess.Popen(  # noqa: S603 -- our own interpreter and script
        [sys.executable, str(FAKE), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    env: dict[str, str] = {}
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    while "BREAKGLASS_LAUNCHDARKLY__ENVIRONMENT_KEY" not in env:
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the fake LaunchDarkly server did not start")
        name, _, value = line.removeprefix("export ").strip().partition("=")
        env[name] = value
    return process, env


def print_table(summary: dict[str, Any]) -> None:
    print("| direction | metric | n | timeouts | min | p50 | p95 | p99 | max |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for direction in ("halt", "resume"):
        for metric, row in summary[f"{direction}_ms"].items():
            cells = [row.get(k, "") for k in ("n", "timeouts", "min", "p50", "p95", "p99", "max")]
            print(f"| {direction} | {metric} | " + " | ".join(str(c) for c in cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--rounds", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--url",
        help="a running LaunchDarkly-protocol server (used as SDK, stream and API base); "
        "keys from BREAKGLASS_LAUNCHDARKLY__SDK_KEY / __API_TOKEN",
    )
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args()

    process = None
    try:
        if args.url:
            for name in ("BASE_URI", "STREAM_URI", "EVENTS_URI", "API_BASE_URL"):
                os.environ[f"BREAKGLASS_LAUNCHDARKLY__{name}"] = args.url
        else:
            process, env = start_fake()
            os.environ.update(env)
        summary = run(args.rounds, args.timeout, args.seed)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
    print_table(summary)
    text = json.dumps(summary, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)
    p99 = summary["halt_ms"]["propagation"].get("p99")
    met = (
        p99 is not None
        and p99 <= TARGET_P99_MS
        and summary["halt_ms"]["propagation"]["timeouts"] == 0
    )
    print(
        f"halt propagation p99 {p99} ms: target <= {TARGET_P99_MS:g} ms {'met' if met else 'NOT met'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
