"""The ``unleash`` entry point of the ``breakglass.providers`` group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from breakglass.seams import Backend
from breakglass.source_id import source_id
from breakglass_unleash.admin import UnleashAdmin
from breakglass_unleash.audit import UnleashAudit
from breakglass_unleash.settings import UnleashSettings, load_unleash_settings
from breakglass_unleash.source import SOURCE_NAME, UnleashSource

if TYPE_CHECKING:
    from breakglass.clock import Clock
    from breakglass.settings import Settings


def create_backend(unleash: UnleashSettings, flag_key: str, clock: Clock) -> Backend:
    """The three seams for ``flag_key`` on the Unleash described by ``unleash`` (no network I/O).

    Without an admin token the backend can read only: ``admin`` and ``audit`` are ``None``.
    """
    has_admin = unleash.admin_token is not None
    return Backend(
        name=SOURCE_NAME,
        admin_setting="BREAKGLASS_UNLEASH__ADMIN_TOKEN",
        source=UnleashSource(unleash, flag_key, clock=clock),
        admin=UnleashAdmin(unleash, flag_key, clock=clock) if has_admin else None,
        audit=UnleashAudit(unleash, flag_key, clock=clock) if has_admin else None,
        poll_bound=unleash.poll_bound,
        # A true rests on the SDK's poll too (the older of the two contacts confirms it).
        confirm_interval=max(unleash.refresh_interval, unleash.sdk_refresh_interval),
        # What the flag is read from and toggled in; the app name changes nothing read.
        source_id=source_id(SOURCE_NAME, unleash.url, unleash.project, unleash.environment),
    )


class UnleashPlugin:
    """Builds the Unleash seams from the ``BREAKGLASS_UNLEASH__*`` settings."""

    @property
    def name(self) -> str:
        """``unleash``."""
        return SOURCE_NAME

    def create(self, settings: Settings, clock: Clock) -> Backend:
        """Read the ``unleash`` settings section and build the seams for ``settings.flag_key``.

        Raises:
            ConfigurationError: A required setting (URL, client token) is missing or invalid.
        """
        return create_backend(load_unleash_settings(), settings.flag_key, clock)


PLUGIN = UnleashPlugin()
