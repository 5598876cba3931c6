"""`system-active` through breakglass, next to other flags through LaunchDarkly's own OpenFeature provider.

Two OpenFeature domains in one process:

* ``breakglass``: the stop button, read through breakglass's LaunchDarkly
  adapter. Fail-closed: unsure means ``False``, whatever default the caller passes.
* ``features``: every other flag, through ``launchdarkly-openfeature-server``
  (``ld_openfeature.LaunchDarklyProvider``), exactly as LaunchDarkly ships it.

Each keeps its own ``ldclient`` connection: breakglass applies its own
freshness rules to the stop button, and the product flags keep LaunchDarkly's
usual behaviour (last known values while the stream is down).

Run against the LaunchDarkly-protocol test server, started in this process::

    .venv/bin/python examples/launchdarkly_side_by_side.py --local

or against LaunchDarkly (or a Relay Proxy) with ``BREAKGLASS_LAUNCHDARKLY__SDK_KEY``
(and ``__API_TOKEN`` for the halt/resume part) set, plus ``__BASE_URI`` /
``__STREAM_URI`` for a Relay Proxy::

    .venv/bin/python examples/launchdarkly_side_by_side.py --flag new-ranking
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ld_openfeature import LaunchDarklyProvider  # noqa: TID251 -- LaunchDarkly's own provider, on purpose
from ldclient.config import Config  # noqa: TID251 -- configures LaunchDarkly's own provider
from openfeature import api
from openfeature.evaluation_context import EvaluationContext

import breakglass
from breakglass_launchdarkly import load_launchdarkly_settings

FAKE = (
    Path(__file__).resolve().parents[1]
    / "providers/breakglass-launchdarkly/tests/launchdarkly_tests/fake_ld.py"
)
FEATURES = "features"


def start_local_server() -> Any:
    """The adapter's test server, with `system-active` and two product flags."""
    spec = importlib.util.spec_from_file_location("fake_ld", FAKE)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the test server from {FAKE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    server = module.FakeLaunchDarkly()
    server.add_flag("system-active", on=True)
    server.add_flag("new-ranking", on=True)
    server.add_flag("max-tokens", variations=[2048, 512])
    server.start()
    env = {
        "SDK_KEY": server.sdk_key,
        "API_TOKEN": server.api_token,
        "BASE_URI": server.url,
        "STREAM_URI": server.url,
        "EVENTS_URI": server.url,
        "API_BASE_URL": server.url,
    }
    for name, value in env.items():
        os.environ[f"BREAKGLASS_LAUNCHDARKLY__{name}"] = value
    os.environ["BREAKGLASS_PROVIDER"] = "launchdarkly"
    os.environ.setdefault("BREAKGLASS_STATE_DIR", tempfile.mkdtemp(prefix="bg-ld-example-"))
    return server


def launchdarkly_provider() -> LaunchDarklyProvider:
    """LaunchDarkly's OpenFeature provider, on the same endpoints as the adapter."""
    ld = load_launchdarkly_settings()
    config = Config(
        ld.sdk_key.get_secret_value(),
        base_uri=ld.base_uri,
        stream_uri=ld.stream_uri,
        events_uri=ld.events_uri,
        send_events=False,
    )
    return LaunchDarklyProvider(config, start_wait=5)


def show(
    stop_button: Any, features: Any, flags: list[tuple[str, str]], context: EvaluationContext
) -> None:
    # True on purpose: breakglass never lets the caller's default decide.
    details = stop_button.get_boolean_details("system-active", True)
    meta = dict(details.flag_metadata)
    print(
        f"  system-active = {details.value!s:5}  (breakglass: {details.reason}, cause {meta.get('cause')})"
    )
    for key, kind in flags:
        if kind == "int":
            value = features.get_integer_details(key, 0, context)
        elif kind == "str":
            value = features.get_string_details(key, "", context)
        else:
            value = features.get_boolean_details(key, False, context)
        print(f"  {key:13} = {value.value!s:5}  (LaunchDarkly provider: {value.reason})")


def parse_flag(text: str) -> tuple[str, str]:
    """``key`` or ``key:bool|int|str``."""
    key, _, kind = text.partition(":")
    return key, kind or "bool"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--local", action="store_true", help="start the test server in-process")
    parser.add_argument(
        "--flag",
        action="append",
        default=None,
        type=parse_flag,
        help="a product flag to read, KEY or KEY:bool|int|str (repeatable)",
    )
    args = parser.parse_args()
    server = start_local_server() if args.local else None
    flags = args.flag or ([("new-ranking", "bool"), ("max-tokens", "int")] if args.local else [])
    os.environ.setdefault("BREAKGLASS_PROVIDER", "launchdarkly")
    context = EvaluationContext(targeting_key="inference-service-1", attributes={"kind": "user"})
    try:
        api.set_provider_and_wait(launchdarkly_provider(), domain=FEATURES)
        with breakglass.open_bridge() as bridge:
            bridge.register()  # domain "breakglass", ready before the first read
            bridge.engine.wait_for_confirmation(5.0)
            stop_button = api.get_client(breakglass.DEFAULT_DOMAIN)
            features = api.get_client(FEATURES)
            print("both providers up:")
            show(stop_button, features, flags, context)
            if bridge.backend.admin is None:
                return
            bridge.halt(actor="example", reason="side-by-side demo: halt")
            time.sleep(0.2)
            print("after breakglass halt (product flags untouched):")
            show(stop_button, features, flags, context)
            bridge.resume(actor="example", reason="side-by-side demo: resume")
            time.sleep(0.2)
            print("after resume:")
            show(stop_button, features, flags, context)
    finally:
        api.shutdown()
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
