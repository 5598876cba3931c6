"""Read `system-active` through OpenFeature, beside the host's own flags.

The bridge registers under its own OpenFeature domain ("breakglass"), so the
host's default provider (here an in-memory one; in production the vendor's own
OpenFeature provider) keeps serving every other flag.

Run:  BREAKGLASS_STATE_DIR=/tmp/bg .venv/bin/python examples/openfeature_client.py
"""

from __future__ import annotations

from openfeature import api
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

import breakglass


def main() -> None:
    api.set_provider_and_wait(
        InMemoryProvider({"new-ranking": InMemoryFlag("on", {"on": True, "off": False})})
    )
    with breakglass.open_bridge() as bridge:
        bridge.register()  # domain "breakglass", ready before the first read
        bridge.engine.wait_for_confirmation(5.0)
        stop_button = api.get_client(breakglass.DEFAULT_DOMAIN)
        features = api.get_client()
        # Pass True on purpose: breakglass never lets the caller's default decide.
        details = stop_button.get_boolean_details("system-active", True)
        print(
            f"system-active = {details.value} (reason {details.reason}, {dict(details.flag_metadata)})"
        )
        print(f"new-ranking   = {features.get_boolean_value('new-ranking', False)}")
    api.shutdown()


if __name__ == "__main__":
    main()
