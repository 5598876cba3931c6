"""The per-request check against the vendor SDKs' own reads of a boolean flag.

Run by hand (not a test)::

    .venv/bin/python benchmarks/bench_vendor_reads.py          # Markdown table (about 12 s)
    .venv/bin/python benchmarks/bench_vendor_reads.py --json   # the same as JSON

One process times, interleaved exactly as ``bench_guard.py`` does (its
``measure`` and ``markdown`` are imported from it): breakglass's
``guard.active``; an OpenFeature client bound to breakglass's
``SystemActiveProvider``; each vendor SDK's own per-request read of the flag;
and LaunchDarkly's own OpenFeature provider. Every SDK is set up offline with
the flag on:

* LaunchDarkly: ``LDClient`` on a ``TestData`` data source, events and
  diagnostics off; ``variation(key, context, False)``.
* Unleash: ``UnleashClient`` with its toggles bootstrapped into an in-memory
  cache and ``initialize_client(fetch_toggles=False)`` (the SDK's offline
  mode), registration and metrics off; ``is_enabled(key, context)``.
* Flagsmith: ``Flagsmith(offline_mode=True)`` on the environment document
  captured from a real Flagsmith 2.68 (the adapter's test fixture);
  ``get_environment_flags().is_feature_enabled(key)``, evaluated locally.

Every path must answer True before it is timed. An audit hook refuses any
socket connection or name lookup for the whole run, so no path can reach the
network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import threading
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from flagsmith import Flagsmith
from ld_openfeature import LaunchDarklyProvider
from ldclient import Context, LDClient
from ldclient.config import Config
from ldclient.integrations.test_data import TestData
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from UnleashClient.cache import BaseCache
from UnleashClient.clients.unleash_client import UnleashClient
from UnleashClient.constants import FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from breakglass.engine import StateEngine
from breakglass.guard import Guard
from breakglass.provider import SystemActiveProvider, register
from breakglass.testing import ScriptedSource

if TYPE_CHECKING:
    from collections.abc import Iterator

    from flagsmith.api.types import EnvironmentModel

# The timing helpers are bench_guard.py's; import it as `benchmarks.bench_guard` (the name mypy
# gives it), which needs the repository root on the path when this file is run as a script.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_guard import HEADLINE, REFERENCE, Case, markdown, measure  # noqa: E402

FLAG = "system-active"
BREAKGLASS_DOMAIN = "bench-breakglass"
LAUNCHDARKLY_DOMAIN = "bench-launchdarkly"
# The context the LaunchDarkly adapter evaluates with (a fixed "service" context).
LD_CONTEXT_KEY = "breakglass-system-active"
LD_CONTEXT_KIND = "service"
# The context the Unleash adapter evaluates with.
UNLEASH_CONTEXT = {"sessionId": "breakglass:bench"}

FLAGSMITH_DOCUMENT = (
    ROOT
    / "providers"
    / "breakglass-flagsmith"
    / "tests"
    / "fixtures"
    / "20-environment-document.json"
)

# The features payload of an Unleash 8 server's `GET /api/client/features` for a kill-switch
# toggle with the default strategy, enabled: what the adapter's live tests create.
UNLEASH_FEATURES: dict[str, Any] = {
    "version": 2,
    "features": [
        {
            "name": FLAG,
            "type": "kill-switch",
            "description": "breakglass stop flag",
            "project": "default",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [
                {"name": "default", "constraints": [], "parameters": {}, "variants": []}
            ],
            "variants": [],
        }
    ],
    "segments": [],
    "query": {
        "project": ["default"],
        "environment": "development",
        "inlineSegmentConstraints": True,
    },
    "meta": {"revisionId": 1, "etag": '"bench"', "queryHash": "bench"},
}

BREAKGLASS = HEADLINE[:2]  # (a) guard.active and (b) OpenFeature -> SystemActiveProvider

VENDORS = (
    Case(
        "launchdarkly-sdk",
        "(c) LaunchDarkly SDK `LDClient.variation` (TestData)",
        "ld_client.variation(FLAG, ld_context, False)",
    ),
    Case(
        "unleash-sdk",
        "(c) Unleash SDK `UnleashClient.is_enabled` (bootstrapped, offline)",
        "unleash.is_enabled(FLAG, unleash_context)",
    ),
    Case(
        "flagsmith-sdk",
        "(c) Flagsmith SDK local evaluation (offline, captured document)",
        "flagsmith.get_environment_flags().is_feature_enabled(FLAG)",
    ),
    Case(
        "openfeature-launchdarkly",
        "(d) OpenFeature client -> LaunchDarkly's `LaunchDarklyProvider` (TestData)",
        "ld_of_client.get_boolean_value(FLAG, False, ld_of_context)",
    ),
)

_NETWORK_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo", "socket.gethostbyname"})
_network_attempts: list[str] = []


def _refuse_network(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: no socket connection or name lookup, from any thread, for the whole run."""
    if event in _NETWORK_EVENTS:
        _network_attempts.append(f"{event}{args!r}")
        raise RuntimeError(f"bench_vendor_reads: network refused ({event})")


class _BootstrappedCache(BaseCache):
    """The Unleash SDK's cache in memory (its default ``FileCache`` writes to disk), bootstrapped."""

    def __init__(self, features: dict[str, Any]) -> None:
        self._data: dict[str, Any] = {FEATURES_URL: json.dumps(features)}
        # The SDK loads a bootstrapped cache into its engine in the constructor.
        self.bootstrapped = True

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def mset(self, data: dict[str, Any]) -> None:
        self._data.update(data)

    def get(self, key: str, default: Any | None = None) -> Any:
        return self._data.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._data

    def destroy(self) -> None:
        self._data.clear()


class _DocumentHandler:
    """A Flagsmith offline handler serving one environment document held in memory."""

    def __init__(self, document: EnvironmentModel) -> None:
        self._document = document

    def get_environment(self) -> EnvironmentModel:
        return self._document


def _flagsmith_document() -> EnvironmentModel:
    captured = json.loads(FLAGSMITH_DOCUMENT.read_text(encoding="utf-8"))
    document = captured["body"]
    states = [s for s in document["feature_states"] if s["feature"]["name"] == FLAG]
    if len(states) != 1 or states[0]["enabled"] is not True:
        sys.exit(f"{FLAGSMITH_DOCUMENT.name}: {FLAG!r} is not a single enabled feature state")
    return cast("EnvironmentModel", document)


def _breakglass(stack: contextlib.ExitStack) -> dict[str, Any]:
    # The start-up and shutdown state changes are logged; they are not what is measured.
    logging.getLogger("breakglass").setLevel(logging.ERROR)
    source = ScriptedSource("bench")
    # An hour of freshness: the flag stays active for the whole run without a recompute.
    engine = StateEngine(FLAG, [source], max_staleness=3600.0)
    engine.start()
    stack.callback(engine.close)
    source.confirm(value=True)
    guard = Guard(engine)
    stack.callback(guard.close)
    register(SystemActiveProvider(engine, owns_engine=False), BREAKGLASS_DOMAIN)
    return {
        "guard": guard,
        "engine": engine,
        "monotonic": time.monotonic,
        "bg_client": api.get_client(BREAKGLASS_DOMAIN),
    }


def _launchdarkly(stack: contextlib.ExitStack) -> dict[str, Any]:
    # ldclient logs its start and close at INFO; only warnings and errors are shown.
    logging.getLogger("ldclient").setLevel(logging.WARNING)
    data = TestData.data_source()
    data.update(data.flag(FLAG).boolean_flag().variation_for_all(True))  # noqa: FBT003
    config = Config(
        "bench-sdk-key",
        update_processor_class=data,
        send_events=False,
        diagnostic_opt_out=True,
    )
    client = LDClient(config, start_wait=5)
    stack.callback(client.close)
    if not client.is_initialized():
        sys.exit("the LaunchDarkly client did not initialise from TestData")
    # LaunchDarkly's provider builds its own LDClient from the config: a second client on the
    # same TestData source. api.shutdown() closes it.
    provider = LaunchDarklyProvider(config, start_wait=5)
    api.set_provider_and_wait(provider, domain=LAUNCHDARKLY_DOMAIN)
    return {
        "ld_client": client,
        "ld_context": Context.create(LD_CONTEXT_KEY, LD_CONTEXT_KIND),
        "ld_of_client": api.get_client(LAUNCHDARKLY_DOMAIN),
        "ld_of_context": EvaluationContext(
            targeting_key=LD_CONTEXT_KEY, attributes={"kind": LD_CONTEXT_KIND}
        ),
    }


def _unleash(stack: contextlib.ExitStack) -> dict[str, Any]:
    client = UnleashClient(
        # Never contacted: registration and metrics are off and toggles are not fetched.
        url="http://127.0.0.1:9/api",
        app_name="breakglass-bench",
        environment="development",
        instance_id="breakglass-bench",
        # The offline connector re-reads the cache on this period; keep it out of the timing.
        refresh_interval=3600,
        disable_metrics=True,
        disable_registration=True,
        cache=_BootstrappedCache(UNLEASH_FEATURES),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    stack.callback(client.destroy)
    client.initialize_client(fetch_toggles=False)
    if not client.is_initialized:
        sys.exit("the Unleash client did not initialise offline")
    return {"unleash": client, "unleash_context": dict(UNLEASH_CONTEXT)}


def _flagsmith() -> dict[str, Any]:
    # Offline mode: no HTTP session, no polling thread, no analytics.
    client = Flagsmith(offline_mode=True, offline_handler=_DocumentHandler(_flagsmith_document()))
    return {"flagsmith": client}


@contextlib.contextmanager
def _environment() -> Iterator[dict[str, Any]]:
    """Everything the timed statements read; every SDK is closed on the way out."""
    with contextlib.ExitStack() as stack:
        # The stack unwinds in reverse: the Unleash and LaunchDarkly clients, then api.shutdown()
        # (which closes LaunchDarkly's provider and its client), then the guard and the engine.
        env: dict[str, Any] = {"FLAG": FLAG}
        env.update(_breakglass(stack))
        stack.callback(api.shutdown)
        env.update(_launchdarkly(stack))
        env.update(_unleash(stack))
        env.update(_flagsmith())
        # Every path must answer True before it is timed: a fast wrong answer is worth nothing.
        for path in (*BREAKGLASS, *VENDORS):
            answer = eval(path.stmt, env)  # noqa: S307 -- our own fixed statements
            if answer is not True:
                sys.exit(f"{path.label} answered {answer!r}, not True; not timing it")
        yield env


def _versions() -> dict[str, str]:
    names = (
        "openfeature-sdk",
        "launchdarkly-server-sdk",
        "launchdarkly-openfeature-server",
        "UnleashClient",
        "yggdrasil-engine",
        "flagsmith",
        "flagsmith-flag-engine",
    )
    return {name: metadata.version(name) for name in names}


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=60, help="batches per path (default 60)")
    parser.add_argument(
        "--batch-ms", type=float, default=20.0, help="target milliseconds per batch (default 20)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)

    sys.addaudithook(_refuse_network)
    threads_before = set(threading.enumerate())
    load_before = _loadavg()
    paths = [*BREAKGLASS, *VENDORS, *REFERENCE]
    with _environment() as env:
        rows = measure(paths, env, batches=args.batches, batch_ms=args.batch_ms)
    load_after = _loadavg()
    left = sorted(t.name for t in set(threading.enumerate()) - threads_before if t.is_alive())
    if left:
        print(f"warning: threads still running after shutdown: {left}", file=sys.stderr)
    if _network_attempts:
        sys.exit(f"network use was attempted (and refused): {_network_attempts}")
    versions = _versions()
    context = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": versions,
        "batches": args.batches,
        "batch_ms": args.batch_ms,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "threads_left": left,
    }
    if args.json:
        print(json.dumps({"context": context, "rows": [asdict(r) for r in rows]}, indent=2))
        return
    print(
        f"Python {context['python']} ({context['implementation']}, {context['machine']}, "
        f"{context['cpus']} CPUs); {', '.join(f'{k} {v}' for k, v in versions.items())}.\n"
        f"{args.batches} interleaved batches of ~{args.batch_ms:g} ms per path, gc enabled; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.\n"
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
