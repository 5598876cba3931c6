"""Finding provider adapters through the ``breakglass.providers`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from breakglass.errors import ProviderNotFoundError

if TYPE_CHECKING:
    from breakglass.seams import ProviderPlugin

GROUP = "breakglass.providers"


def available_providers() -> list[str]:
    """The names of the installed provider adapters, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_plugin(name: str) -> ProviderPlugin:
    """The plugin registered as ``name``.

    Raises:
        ProviderNotFoundError: No installed distribution registers ``name``;
            the message says which package to install.
    """
    for ep in entry_points(group=GROUP, name=name):
        plugin: ProviderPlugin = ep.load()
        return plugin
    installed = ", ".join(available_providers()) or "none"
    raise ProviderNotFoundError(
        f"BREAKGLASS_PROVIDER={name!r} has no installed adapter (installed: {installed}); "
        f"install the 'breakglass-{name}' package"
    )
