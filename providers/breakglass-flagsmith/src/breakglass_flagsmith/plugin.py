"""The ``flagsmith`` entry point of the ``breakglass.providers`` group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from breakglass.seams import Backend
from breakglass.source_id import source_id
from breakglass_flagsmith.admin import FlagsmithAdmin
from breakglass_flagsmith.audit import FlagsmithAudit
from breakglass_flagsmith.settings import FlagsmithSettings, load_flagsmith_settings
from breakglass_flagsmith.source import SOURCE_NAME, FlagsmithSource

if TYPE_CHECKING:
    from breakglass.clock import Clock
    from breakglass.settings import Settings


def create_backend(flagsmith: FlagsmithSettings, flag_key: str, clock: Clock) -> Backend:
    """The three seams for ``flag_key`` on the Flagsmith described by ``flagsmith`` (no network I/O).

    Without an admin token the backend can only read: ``admin`` and ``audit`` are ``None``.

    Raises:
        ConfigurationError: An admin token is set but a setting it needs is not.
    """
    has_admin = flagsmith.admin_token is not None
    return Backend(
        name=SOURCE_NAME,
        admin_setting="BREAKGLASS_FLAGSMITH__ADMIN_TOKEN",
        source=FlagsmithSource(flagsmith, flag_key, clock=clock),
        admin=FlagsmithAdmin(flagsmith, flag_key, clock=clock) if has_admin else None,
        audit=FlagsmithAudit(flagsmith, flag_key, clock=clock) if has_admin else None,
        poll_bound=flagsmith.poll_bound,
        confirm_interval=flagsmith.refresh_interval,
        # The environment key selects the environment read.
        source_id=source_id(
            SOURCE_NAME, flagsmith.api_url, secret=flagsmith.environment_key.get_secret_value()
        ),
    )


class FlagsmithPlugin:
    """Builds the Flagsmith seams from the ``BREAKGLASS_FLAGSMITH__*`` settings."""

    @property
    def name(self) -> str:
        """``flagsmith``."""
        return SOURCE_NAME

    def create(self, settings: Settings, clock: Clock) -> Backend:
        """Read the ``flagsmith`` settings section and build the seams for ``settings.flag_key``.

        Raises:
            ConfigurationError: A required setting is missing or invalid (the message names it).
        """
        return create_backend(load_flagsmith_settings(settings), settings.flag_key, clock)


PLUGIN = FlagsmithPlugin()
