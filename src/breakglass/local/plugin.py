"""The ``local`` entry point of the ``breakglass.providers`` group."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from breakglass.local.admin import LocalAdmin
from breakglass.local.audit import LocalAudit
from breakglass.local.source import LocalSource
from breakglass.local.store import LocalStore
from breakglass.seams import Backend
from breakglass.source_id import source_id

if TYPE_CHECKING:
    from breakglass.clock import Clock
    from breakglass.settings import Settings


class LocalPlugin:
    """Builds the embedded provider's seams on ``<state_dir>/local.db``."""

    @property
    def name(self) -> str:
        """``local``."""
        return "local"

    def create(self, settings: Settings, clock: Clock) -> Backend:
        """The source, admin and audit source, sharing one store."""
        store = LocalStore(settings.local_file, clock)
        interval = settings.local.poll_interval
        return Backend(
            name=self.name,
            source=LocalSource(store, settings.flag_key, poll_interval=interval, clock=clock),
            admin=LocalAdmin(store, settings.flag_key, clock),
            audit=LocalAudit(store, settings.flag_key, clock=clock),
            poll_bound=interval,
            confirm_interval=interval,
            # The host too: the store is a file on this host's disk, so the same path on another
            # host is another store (SQLite is not shared over network file systems).
            source_id=source_id(
                self.name, socket.gethostname(), str(settings.local_file.resolve())
            ),
        )


PLUGIN = LocalPlugin()
