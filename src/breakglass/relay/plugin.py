"""The ``relay`` entry point of the ``breakglass.providers`` group: a worker behind a host relay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from breakglass.relay.channel import ChannelReader
from breakglass.relay.settings import load_relay_settings
from breakglass.relay.source import NAME, RelaySource, channel_source_id, idle_read
from breakglass.relay.watch import ChangeWatch
from breakglass.seams import Backend

if TYPE_CHECKING:
    from breakglass.clock import Clock
    from breakglass.settings import Settings


class RelayPlugin:
    """Builds a worker's source on the relay's channel file. It has no admin: halt upstream."""

    @property
    def name(self) -> str:
        """``relay``."""
        return NAME

    def create(self, settings: Settings, clock: Clock) -> Backend:
        """The relay source; no admin, no audit, nothing remembered across restarts."""
        relay = load_relay_settings(settings)
        path = relay.channel_path(settings)
        return Backend(
            name=NAME,
            source=RelaySource(
                ChannelReader(path, owner=relay.owner_uid()),
                flag_key=settings.flag_key,
                max_staleness=settings.max_staleness,
                poll_interval=relay.poll_interval,
                silent_after=relay.silent_after,
                clock=clock,
                watch=ChangeWatch(path, fallback=relay.poll_interval),
            ),
            admin=None,
            audit=None,
            no_admin=(
                "a worker only reads its relay; halt through the provider the relay reads "
                "(breakglass halt with the relay's settings, or serve)"
            ),
            # A change wakes the worker (inotify), or is read within a poll without it.
            poll_bound=relay.poll_interval + relay.heartbeat,
            # The relay writes at least every heartbeat; a worker reads at least every idle read.
            confirm_interval=relay.heartbeat
            + max(relay.poll_interval, idle_read(relay.silent_after)),
            durable=False,
            source_id=channel_source_id(path),
        )


PLUGIN = RelayPlugin()
