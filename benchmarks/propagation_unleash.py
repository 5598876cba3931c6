"""Propagation on Unleash: admin toggle acknowledged -> breakglass engine halted (and resumed).

Starts its own unleash-server on loopback (the one the adapter's tests use:
``providers/breakglass-unleash/tests/conftest.py``), unless ``--url`` points at
a running one. Each round turns the flag off through the Admin API, waits for
the engine to halt, turns it on, waits for it to resume, with a random pause so
rounds do not lock onto the poll.

    .venv/bin/python benchmarks/propagation_unleash.py -n 30 --json results.json

Times (milliseconds): ``propagation`` = engine changed - write acknowledged;
``end_to_end`` = engine changed - write started. Rounds that time out are
counted, never dropped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from breakglass.engine import StateEngine
from breakglass_unleash import UnleashAdmin, UnleashSettings, UnleashSource

# The shared helpers are imported as `benchmarks._propagation` (the name mypy gives them),
# which needs the repository root on the path when this file is run as a script.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._propagation import Watch, summarise  # noqa: E402

HARNESS = ROOT / "providers" / "breakglass-unleash" / "tests" / "conftest.py"
FLAG = "system-active-propagation-bench"


def load_harness() -> Any:
    spec = importlib.util.spec_from_file_location("breakglass_unleash_bench_harness", HARNESS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(settings: UnleashSettings, rounds: int, timeout: float, seed: int) -> dict[str, Any]:
    admin = UnleashAdmin(settings, FLAG)
    engine = StateEngine(FLAG, [UnleashSource(settings, FLAG)], max_staleness=30.0)
    watch = Watch(engine)
    engine.start()
    rng = random.Random(seed)  # noqa: S311 -- phase jitter, not crypto
    results: dict[str, dict[str, list[float]]] = {
        "halt": {"propagation": [], "end_to_end": [], "ack": []},
        "resume": {"propagation": [], "end_to_end": [], "ack": []},
    }
    timeouts = {"halt": 0, "resume": 0}
    try:
        admin.set_active(True, actor="benchmark", reason="start")
        if watch.wait(active=True, timeout=timeout) is None:
            raise SystemExit(f"the engine never became active: {engine.state}")
        for index in range(rounds):
            for kind, target in (("halt", False), ("resume", True)):
                time.sleep(rng.uniform(0.05, 0.05 + settings.refresh_interval))
                started = time.monotonic()
                admin.set_active(target, actor="benchmark", reason=f"round {index} {kind}")
                acked = time.monotonic()
                changed = watch.wait(active=target, timeout=timeout)
                if changed is None:
                    timeouts[kind] += 1
                    print(f"#{index:02d} {kind:6s} TIMEOUT after {timeout:g} s", flush=True)
                    continue
                row = results[kind]
                row["propagation"].append((changed - acked) * 1000)
                row["end_to_end"].append((changed - started) * 1000)
                row["ack"].append((acked - started) * 1000)
                print(
                    f"#{index:02d} {kind:6s} ack {row['ack'][-1]:6.1f} ms  "
                    f"propagation {row['propagation'][-1]:7.1f} ms",
                    flush=True,
                )
    finally:
        engine.close()
        admin.close()
    single_rate = 1 / settings.refresh_interval
    sdk_rate = 1 / settings.sdk_refresh_interval
    return {
        "provider": "unleash",
        "rounds": rounds,
        "settings": {
            "refresh_interval": settings.refresh_interval,
            "sdk_refresh_interval": settings.sdk_refresh_interval,
            "request_timeout": settings.request_timeout,
        },
        "load_per_reader_req_per_s": {
            "single_flag_endpoint": round(single_rate, 2),
            "sdk_bulk_endpoint": round(sdk_rate, 2),
            "total": round(single_rate + sdk_rate, 2),
        },
        "halt_ms": {k: summarise(v, timeouts["halt"]) for k, v in results["halt"].items()},
        "resume_ms": {k: summarise(v, timeouts["resume"]) for k, v in results["resume"].items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--rounds", type=int, default=30)
    parser.add_argument(
        "--refresh-interval", type=float, default=None, help="default: the adapter's"
    )
    parser.add_argument(
        "--sdk-refresh-interval", type=float, default=None, help="default: the adapter's"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds per round before it counts as timed out",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--url",
        help="a running server's API base (else one is started); tokens from "
        "BREAKGLASS_UNLEASH__CLIENT_TOKEN / __ADMIN_TOKEN",
    )
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args()

    overrides: dict[str, Any] = {}
    if args.refresh_interval is not None:
        overrides["refresh_interval"] = args.refresh_interval
    if args.sdk_refresh_interval is not None:
        overrides["sdk_refresh_interval"] = args.sdk_refresh_interval

    server = postgres = None
    try:
        if args.url:
            settings = UnleashSettings(
                url=args.url,
                client_token=SecretStr(os.environ["BREAKGLASS_UNLEASH__CLIENT_TOKEN"]),
                admin_token=SecretStr(os.environ["BREAKGLASS_UNLEASH__ADMIN_TOKEN"]),
                **overrides,
            )
        else:
            server, postgres = start_server()
            defaults = UnleashSettings(url=server.api_url, client_token=SecretStr("x"))
            settings = UnleashSettings(
                url=server.api_url,
                client_token=SecretStr(server.client_token),
                admin_token=SecretStr(server.admin_token),
                refresh_interval=overrides.get("refresh_interval", defaults.refresh_interval),
                sdk_refresh_interval=overrides.get(
                    "sdk_refresh_interval", defaults.sdk_refresh_interval
                ),
            )
        _ensure_flag(settings)
        summary = run(settings, args.rounds, args.timeout, args.seed)
    finally:
        if server is not None:
            server.stop()
        if postgres is not None:
            postgres.close()
            shutil.rmtree(postgres._workdir, ignore_errors=True)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if summary["halt_ms"]["propagation"].get("timeouts", 0) == 0 else 1


def start_server() -> tuple[Any, Any]:
    """A fresh unleash-server and its database, as the adapter's tests start them."""
    harness = load_harness()
    harness.UnleashServer.install()
    workdir = Path(tempfile.mkdtemp(prefix="bg-unleash-bench-"))
    workdir.chmod(0o755)
    postgres = harness.Postgres(workdir)
    postgres.start()
    server = harness.UnleashServer(workdir, postgres.url)
    try:
        server.start()
    except Exception:
        postgres.close()
        raise
    return server, postgres


def _ensure_flag(settings: UnleashSettings) -> None:
    import requests

    assert settings.admin_token is not None
    headers = {"Authorization": settings.admin_token.get_secret_value()}
    base = f"{settings.admin_base}/admin/projects/{settings.project}/features"
    if requests.get(f"{base}/{FLAG}", headers=headers, timeout=10).status_code == 404:
        requests.post(
            base, headers=headers, json={"name": FLAG, "type": "kill-switch"}, timeout=10
        ).raise_for_status()
        requests.post(
            f"{base}/{FLAG}/environments/{settings.environment}/strategies",
            headers=headers,
            json={"name": "default", "constraints": [], "parameters": {}},
            timeout=10,
        ).raise_for_status()


if __name__ == "__main__":
    sys.exit(main())
