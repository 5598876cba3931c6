"""Flagsmith adapter for breakglass: read, toggle and audit the stop flag on Flagsmith.

Installing this distribution registers the ``flagsmith`` provider; select it with
``BREAKGLASS_PROVIDER=flagsmith`` and configure it with ``BREAKGLASS_FLAGSMITH__*``
(see :class:`breakglass_flagsmith.settings.FlagsmithSettings`). Reads go through
the official ``flagsmith`` SDK (local evaluation by default); the Flagsmith Edge
Proxy works by pointing ``BREAKGLASS_FLAGSMITH__API_URL`` at it.
"""

from breakglass_flagsmith.admin import FlagsmithAdmin
from breakglass_flagsmith.audit import FlagsmithAudit
from breakglass_flagsmith.plugin import PLUGIN, FlagsmithPlugin, create_backend
from breakglass_flagsmith.settings import FlagsmithSettings, load_flagsmith_settings
from breakglass_flagsmith.source import FlagsmithSource

__all__ = [
    "PLUGIN",
    "FlagsmithAdmin",
    "FlagsmithAudit",
    "FlagsmithPlugin",
    "FlagsmithSettings",
    "FlagsmithSource",
    "create_backend",
    "load_flagsmith_settings",
]
