"""LaunchDarkly adapter for breakglass: reads, toggles and audits the ``system-active`` flag.

Installing this distribution registers the ``launchdarkly`` provider;
``BREAKGLASS_PROVIDER=launchdarkly`` selects it. See ``docs/providers/launchdarkly.md``.
"""

from breakglass_launchdarkly.admin import LaunchDarklyAdmin
from breakglass_launchdarkly.audit import LaunchDarklyAudit
from breakglass_launchdarkly.plugin import PLUGIN, create_backend
from breakglass_launchdarkly.settings import LaunchDarklySettings, load_launchdarkly_settings
from breakglass_launchdarkly.source import LaunchDarklySource

__all__ = [
    "PLUGIN",
    "LaunchDarklyAdmin",
    "LaunchDarklyAudit",
    "LaunchDarklySettings",
    "LaunchDarklySource",
    "create_backend",
    "load_launchdarkly_settings",
]
