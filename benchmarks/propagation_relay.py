"""K workers behind one relay against one reader reading the vendor directly, in one run.

For each provider (``local``; ``launchdarkly`` on the LaunchDarkly-protocol server of the adapter's
tests, in its own process), three probe runs of ``--rounds`` toggles each:

1. ``direct, K = 1``: one reader on the provider: what the relay itself sees (the baseline);
2. ``via relay, K = 1`` and 3. ``via relay, K = --workers``: the probe starts one ``breakglass relay``
   on the provider and K worker processes on ``BREAKGLASS_PROVIDER=relay``;
4. with ``--direct-fleet``, ``direct, K = --workers``: K readers each on the provider, as before the relay.

The verdict: the last worker's halt p99 (ack -> refusing) at K must be at most the baseline's halt p99
plus 20 ms. Each run also reports its fan-out: first to last reader of each halt (p50 and max), which
the vendor's own delay does not enter. With ``--provider flagsmith`` the Flagsmith-protocol server of the adapter's tests runs in this process
and every reader (the relay's, or each direct reader's) fetches every ``--refresh`` seconds.
For LaunchDarkly and Flagsmith the server counts the SDK reads it served (``GET /all`` streams and
``GET /sdk/latest-all`` polls), so the vendor's load per run shows whether it grows with K.

    .venv/bin/python benchmarks/propagation_relay.py --rounds 100 --workers 50 --json relay.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from breakglass.probe import ProbeOptions, run_probe
from breakglass.probe.report import to_json
from breakglass.settings import load_settings

FAKE = (
    Path(__file__).resolve().parents[1]
    / "providers"
    / "breakglass-launchdarkly"
    / "tests"
    / "launchdarkly_tests"
    / "fake_ld.py"
)
FLAGSMITH_TESTS = (
    Path(__file__).resolve().parents[1] / "providers" / "breakglass-flagsmith" / "tests"
)
PROBE_FLAG = "system-active-probe"
MARGIN_MS = 20.0


class Flagsmith:
    """The Flagsmith-protocol server of the adapter's tests, in this process; counts the SDK's reads."""

    def __init__(self, refresh: float) -> None:
        sys.path.insert(0, str(FLAGSMITH_TESTS))
        from flagsmith_tests.server import FlagsmithServer

        self.server = FlagsmithServer().start()
        self.env = {
            "BREAKGLASS_FLAGSMITH__API_URL": self.server.api_url,
            "BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY": self.server.server_key,
            "BREAKGLASS_FLAGSMITH__ADMIN_TOKEN": f"Api-Key {self.server.master_key}",
            "BREAKGLASS_FLAGSMITH__PROJECT_ID": str(self.server.project["id"]),
            "BREAKGLASS_FLAGSMITH__ENVIRONMENT_API_KEY": self.server.client_key,
            "BREAKGLASS_FLAGSMITH__REFRESH_INTERVAL": str(refresh),
        }

    def stop(self) -> dict[str, int]:
        counts = {
            f"GET {kind}": n for kind, n in self.server.counters.by_kind.items() if kind != "admin"
        }
        self.server.stop()
        return counts


class Unleash:
    """A real unleash-server on PostgreSQL (as the adapter's tests start it), holding the probe flag.

    unleash-server is not asked what it served; the rate at the vendor is the readers' configured one:
    one single-flag read every ``refresh`` seconds and one SDK poll every 5 s, per reader.
    """

    def __init__(self, refresh: float) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from propagation_unleash import start_server  # type: ignore[import-not-found]

        self.server, self.postgres = start_server()
        self.server.create_flag(PROBE_FLAG, enabled=True)
        self.env = {
            "BREAKGLASS_UNLEASH__URL": self.server.api_url,
            "BREAKGLASS_UNLEASH__CLIENT_TOKEN": self.server.client_token,
            "BREAKGLASS_UNLEASH__ADMIN_TOKEN": self.server.admin_token,
            "BREAKGLASS_UNLEASH__REFRESH_INTERVAL": str(refresh),
        }

    def stop(self) -> dict[str, int]:
        self.server.stop()
        self.postgres.close()
        return {}


class FakeLaunchDarkly:
    """The LaunchDarkly-protocol server in its own process; reports the reads it served at the end."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 -- our own interpreter and script
            [sys.executable, str(FAKE), "--port", "0", "--flag", f"{PROBE_FLAG}=true"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.env: dict[str, str] = {}
        assert self.process.stdout is not None
        while "BREAKGLASS_LAUNCHDARKLY__ENVIRONMENT_KEY" not in self.env:
            line = self.process.stdout.readline()
            if not line:
                raise SystemExit("the LaunchDarkly-protocol server did not start")
            name, _, value = line.removeprefix("export ").strip().partition("=")
            self.env[name] = value

    def stop(self) -> dict[str, int]:
        self.process.terminate()
        assert self.process.stdout is not None
        out, _ = self.process.communicate(timeout=20)
        for line in out.splitlines():
            if line.startswith("requests "):
                counts: dict[str, int] = json.loads(line.removeprefix("requests "))
                return counts
        return {}


def probe(
    provider: str, *, readers: int, via: str | None, rounds: int, seed: int
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bg-relay-bench-"))
    settings = load_settings(provider=provider, state_dir=work / "state")
    options = ProbeOptions(
        rounds=rounds, readers=readers, via=via, seed=seed, ready_timeout=180.0, timeout=15.0
    )
    data: dict[str, Any] = to_json(run_probe(settings, options, say=lambda _line: None))
    return data


def run(
    provider: str, *, readers: int, via: str | None, rounds: int, seed: int, refresh: float
) -> dict[str, Any]:
    fake: FakeLaunchDarkly | Flagsmith | Unleash | None = None
    if provider == "launchdarkly":
        fake = FakeLaunchDarkly()
    elif provider == "flagsmith":
        fake = Flagsmith(refresh)
    elif provider == "unleash":
        fake = Unleash(refresh)
    saved = dict(os.environ)
    if fake is not None:
        os.environ.update(fake.env)
    started = time.monotonic()
    try:
        data = probe(provider, readers=readers, via=via, rounds=rounds, seed=seed)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        counts = fake.stop() if fake is not None else {}
    seconds = time.monotonic() - started
    # SDK reads only: not the probe's own REST calls, and a 304 is already counted as its GET.
    reads = {k: v for k, v in counts.items() if k.startswith("GET ") and "/api/" not in k}
    halts = data["figures"]["fleet"]["halt"]["propagation_ms"]
    # The fan-out: first to last reader of each halt, whatever the vendor's own delay was.
    spreads = sorted(
        max(seen) - min(seen)
        for r in data["rounds"]
        if r["direction"] == "halt" and (seen := [v for v in r["propagation_ms"] if v is not None])
    )
    return {
        "provider": provider,
        "via": via or "direct",
        "readers": readers,
        "passed": data["passed"],
        "aborted": data["aborted"],
        "halts": halts,
        "fanout_ms": {
            "p50": round(spreads[len(spreads) // 2], 3) if spreads else None,
            "max": round(spreads[-1], 3) if spreads else None,
        },
        "all_rounds": data["figures"]["fleet"]["propagation_ms"],
        "pooled": data["figures"]["pooled"]["propagation_ms"],
        "load": f"{data['host']['load_1m_start']} -> {data['host']['load_1m_end']}",
        "ready_s": data["readers_ready_s"],
        "vendor_reads": reads,
        "vendor_reads_per_s": round(sum(reads.values()) / seconds, 2) if reads else None,
        "seconds": round(seconds, 1),
    }


def row(r: dict[str, Any]) -> str:
    h = r["halts"]
    cells = [
        f"{r['provider']}",
        f"{r['via']}, K = {r['readers']}",
        f"{h['rounds']}",
        f"{h['timed_out']}",
        *(f"{h[k]}" for k in ("p50", "p95", "p99", "max")),
        f"{r['all_rounds']['p99']}",
        f"{r['fanout_ms']['p50']} / {r['fanout_ms']['max']}",
        "-" if r["vendor_reads_per_s"] is None else f"{r['vendor_reads_per_s']}",
        f"{r['load']}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--provider",
        action="append",
        choices=["local", "launchdarkly", "flagsmith", "unleash"],
        help="default: local and launchdarkly",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=0.05,
        help="Flagsmith and Unleash: seconds between the reader's reads (default 0.05: 20/s)",
    )
    parser.add_argument(
        "--direct-fleet",
        action="store_true",
        help="also run K readers on the provider directly, for the vendor's load and the host's",
    )
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    results = []
    verdicts = []
    for provider in args.provider or ["local", "launchdarkly"]:
        runs = [
            run(
                provider,
                readers=1,
                via=None,
                rounds=args.rounds,
                seed=args.seed,
                refresh=args.refresh,
            ),
            run(
                provider,
                readers=1,
                via="relay",
                rounds=args.rounds,
                seed=args.seed,
                refresh=args.refresh,
            ),
            run(
                provider,
                readers=args.workers,
                via="relay",
                rounds=args.rounds,
                seed=args.seed,
                refresh=args.refresh,
            ),
        ]
        if args.direct_fleet:
            runs.append(
                run(
                    provider,
                    readers=args.workers,
                    via=None,
                    rounds=args.rounds,
                    seed=args.seed,
                    refresh=args.refresh,
                )
            )
        results += runs
        base, fleet = runs[0]["halts"]["p99"], runs[2]["halts"]["p99"]
        met = base is not None and fleet is not None and fleet <= base + MARGIN_MS
        verdicts.append(
            f"{provider}: last of {args.workers} workers via relay halts p99 {fleet} ms, "
            f"direct single reader {base} ms: {'met' if met else 'NOT met'} "
            f"(<= +{MARGIN_MS:g} ms)"
        )
    print(
        "| provider | run | halts | t/o | p50 | p95 | p99 | max | all rounds p99 "
        "| first to last reader p50 / max | vendor reads/s | load |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        print(row(r))
    for line in verdicts:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return (
        0
        if all(line.endswith(f"(<= +{MARGIN_MS:g} ms)") and " met " in line for line in verdicts)
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
