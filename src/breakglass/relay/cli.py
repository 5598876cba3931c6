"""``breakglass relay``: run the host relay until SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from breakglass.bridge import Bridge
from breakglass.cli_errors import fail, json_flag, print_json
from breakglass.errors import BreakglassError, ConfigurationError
from breakglass.relay.channel import ChannelWriter
from breakglass.relay.http import OfrepServer
from breakglass.relay.relay import Relay
from breakglass.relay.settings import load_relay_settings
from breakglass.relay.source import NAME
from breakglass.stop_signals import StopSignals

if TYPE_CHECKING:
    from breakglass.settings import Settings


def build_relay(settings: Settings) -> tuple[Relay, OfrepServer | None]:
    """The relay for ``settings`` and its OFREP server (``None`` when not configured); not started.

    Raises:
        ConfigurationError: The relay would read itself, or its channel is taken.
    """
    relay_settings = load_relay_settings(settings)
    upstream = relay_settings.upstream or settings.provider_names
    if NAME in upstream:
        raise ConfigurationError(
            "the relay reads a vendor, not another relay: set BREAKGLASS_RELAY__UPSTREAM "
            "(or [relay] upstream) to the provider it should read"
        )
    bridge = Bridge.from_settings(settings.model_copy(update={"providers": upstream}))
    try:
        writer = ChannelWriter(relay_settings.channel_path(settings))
    except BreakglassError:
        bridge.close()
        raise
    relay = Relay(bridge, writer, heartbeat=relay_settings.heartbeat)
    server = None
    address = relay_settings.address()
    if address is not None:
        try:
            server = OfrepServer(address, relay.bridge.engine)
        except OSError as exc:
            relay.close()
            raise ConfigurationError(
                f"BREAKGLASS_RELAY__OFREP={relay_settings.ofrep}: cannot listen: "
                f"{exc.strerror or exc}"
            ) from None
    return relay, server


@click.command()
@json_flag
@click.pass_obj
def relay(ctx: Any, *, as_json: bool) -> None:
    """Read the vendor once for this host and serve the decision to its workers.

    Workers read it with BREAKGLASS_PROVIDER=relay; other languages through
    OFREP when BREAKGLASS_RELAY__OFREP is set. With --json: a JSON line when it
    serves (flag, provider, channel, OFREP address, pid) and one when it stops.
    """
    stop = StopSignals()
    try:
        settings = ctx.settings()
        the_relay, server = build_relay(settings)
    except BreakglassError as exc:
        stop.close()
        fail(exc)
    the_relay.start()
    if server is not None:
        server.start()
    serving = {
        "event": "serving",
        "flag": settings.flag_key,
        "provider": the_relay.bridge.name,
        "channel": str(the_relay.writer.path),
        "ofrep": server.url if server is not None else None,
        "pid": os.getpid(),
    }
    if as_json:
        print_json(serving)
    else:
        where = f"; OFREP on {server.url}" if server is not None else ""
        click.echo(
            f"relay: serving {settings.flag_key} from {the_relay.bridge.name} "
            f"on {the_relay.writer.path}{where}",
        )
    sys.stdout.flush()
    with stop:
        stop.wait()
    if server is not None:
        server.close()
    the_relay.close()
    if as_json:
        print_json({"event": "stopped", "pid": os.getpid()})
