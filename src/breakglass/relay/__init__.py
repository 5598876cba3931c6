"""The host relay: one process per host reads the vendor, every worker reads the relay.

``breakglass relay`` runs :class:`~breakglass.relay.relay.Relay`; workers set
``BREAKGLASS_PROVIDER=relay`` and read its channel file through
:class:`~breakglass.relay.source.RelaySource`; services in other languages
read it over OFREP. See docs/relay.md.
"""

from __future__ import annotations

from breakglass.relay.channel import ChannelError, ChannelReader, ChannelWriter, Snapshot
from breakglass.relay.relay import Relay
from breakglass.relay.settings import RelaySettings, load_relay_settings
from breakglass.relay.source import RelaySource

__all__ = [
    "ChannelError",
    "ChannelReader",
    "ChannelWriter",
    "Relay",
    "RelaySettings",
    "RelaySource",
    "Snapshot",
    "load_relay_settings",
]
