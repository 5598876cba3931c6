"""Finding provider adapters through the ``breakglass.providers`` entry-point group."""

from __future__ import annotations

from difflib import get_close_matches
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from breakglass.errors import ProviderNotFoundError

if TYPE_CHECKING:
    from breakglass.seams import ProviderPlugin

GROUP = "breakglass.providers"
KNOWN_VENDORS = frozenset({"unleash", "launchdarkly", "flagsmith"})
"""The adapters this project ships as ``breakglass-<vendor>`` distributions."""


def available_providers() -> list[str]:
    """The names of the installed provider adapters, sorted."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def provider_distributions() -> list[tuple[str, str, str]]:
    """``(name, package, version)`` of each installed provider adapter, sorted by name."""
    found: dict[str, tuple[str, str, str]] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist
        found.setdefault(
            ep.name,
            (ep.name, dist.name if dist else "?", dist.version if dist else "?"),
        )
    return [found[name] for name in sorted(found)]


def load_plugin(name: str) -> ProviderPlugin:
    """The plugin registered as ``name``.

    Raises:
        ProviderNotFoundError: No installed distribution registers ``name``;
            the message says which package to install.
    """
    for ep in entry_points(group=GROUP, name=name):
        plugin: ProviderPlugin = ep.load()
        return plugin
    installed = available_providers()
    listed = ", ".join(installed) or "none"
    # A typo must not advise installing a package that does not exist (and could be squatted).
    near = get_close_matches(name, sorted({*installed, *KNOWN_VENDORS}), n=1, cutoff=0.6)
    if name in KNOWN_VENDORS:
        advice = f"install the 'breakglass-{name}' distribution (see Installing in the README)"
    elif near:
        advice = f"did you mean {near[0]!r}?"
    else:
        advice = f"known providers: {', '.join(sorted({*installed, *KNOWN_VENDORS}))}"
    raise ProviderNotFoundError(
        f"BREAKGLASS_PROVIDER={name!r} has no installed adapter (installed: {listed}); {advice}"
    )
