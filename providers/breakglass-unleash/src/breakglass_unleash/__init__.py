"""Unleash adapter for breakglass: read, toggle and audit the stop flag on Unleash or Unleash Edge.

Installing this distribution registers the ``unleash`` provider; select it with
``BREAKGLASS_PROVIDER=unleash`` and configure it with ``BREAKGLASS_UNLEASH__*``
(see :class:`breakglass_unleash.settings.UnleashSettings`).
"""

from breakglass_unleash.admin import UnleashAdmin
from breakglass_unleash.audit import UnleashAudit
from breakglass_unleash.plugin import PLUGIN, UnleashPlugin, create_backend
from breakglass_unleash.settings import UnleashSettings, load_unleash_settings
from breakglass_unleash.source import UnleashSource

__all__ = [
    "PLUGIN",
    "UnleashAdmin",
    "UnleashAudit",
    "UnleashPlugin",
    "UnleashSettings",
    "UnleashSource",
    "create_backend",
    "load_unleash_settings",
]
