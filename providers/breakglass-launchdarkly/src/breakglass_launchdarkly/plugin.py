"""The ``launchdarkly`` entry point of the ``breakglass.providers`` group."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from breakglass.seams import Backend
from breakglass.source_id import source_id
from breakglass_launchdarkly.admin import LaunchDarklyAdmin
from breakglass_launchdarkly.audit import LaunchDarklyAudit
from breakglass_launchdarkly.settings import (
    PREFIX,
    LaunchDarklySettings,
    load_launchdarkly_settings,
)
from breakglass_launchdarkly.source import SOURCE_NAME, LaunchDarklySource

if TYPE_CHECKING:
    from breakglass.clock import Clock
    from breakglass.settings import Settings

logger = logging.getLogger("breakglass.launchdarkly")


def effective_verify_interval(settings: LaunchDarklySettings, max_staleness: float) -> float:
    """The second-opinion interval, lowered to a third of ``max_staleness`` when larger.

    Three checks per staleness window: one lost request never halts a healthy
    reader, and a stalled stream is still caught within ``max_staleness``.
    """
    interval = settings.verify_interval
    if interval <= 0:
        return 0.0
    ceiling = max_staleness / 3
    if interval > ceiling:
        logger.info(
            "launchdarkly: %sVERIFY_INTERVAL %.3g s lowered to %.3g s (a third of max_staleness)",
            PREFIX,
            interval,
            ceiling,
        )
        return ceiling
    return interval


def create_backend(
    launchdarkly: LaunchDarklySettings, flag_key: str, clock: Clock, *, max_staleness: float
) -> Backend:
    """The three seams for ``flag_key`` on the LaunchDarkly described by ``launchdarkly`` (no network I/O).

    Without an access token the backend can read only: ``admin`` and ``audit`` are ``None``.
    """
    has_token = launchdarkly.api_token is not None
    source = LaunchDarklySource(
        launchdarkly,
        flag_key,
        clock=clock,
        verify_interval=effective_verify_interval(launchdarkly, max_staleness),
    )
    return Backend(
        name=SOURCE_NAME,
        admin_setting="BREAKGLASS_LAUNCHDARKLY__API_TOKEN",
        source=source,
        admin=LaunchDarklyAdmin(launchdarkly, flag_key, clock=clock) if has_token else None,
        audit=LaunchDarklyAudit(launchdarkly, flag_key, clock=clock) if has_token else None,
        poll_bound=launchdarkly.poll_bound,
        confirm_interval=source.confirm_interval,
        # The SDK key selects the environment; through a Relay Proxy the URIs differ from
        # LaunchDarkly's own, and rightly: serve cannot see what the proxy forwards.
        source_id=source_id(
            SOURCE_NAME,
            launchdarkly.base_uri,
            launchdarkly.stream_uri,
            secret=launchdarkly.sdk_key.get_secret_value(),
        ),
    )


class LaunchDarklyPlugin:
    """Builds the LaunchDarkly seams from the ``BREAKGLASS_LAUNCHDARKLY__*`` settings."""

    @property
    def name(self) -> str:
        """``launchdarkly``."""
        return SOURCE_NAME

    def create(self, settings: Settings, clock: Clock) -> Backend:
        """Read the ``launchdarkly`` settings section and build the seams for ``settings.flag_key``.

        Raises:
            ConfigurationError: A required setting (the SDK key) is missing or invalid.
        """
        return create_backend(
            load_launchdarkly_settings(),
            settings.flag_key,
            clock,
            max_staleness=settings.max_staleness,
        )


PLUGIN = LaunchDarklyPlugin()
