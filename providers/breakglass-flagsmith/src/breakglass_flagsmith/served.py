"""What readers are served: the flag read exactly as a reader reads it, after a change.

The admin writes the feature's environment default; a reader gets the SDK's
evaluation of the environment (local: the environment document evaluated
in-process; remote: ``GET /flags/``). The service asks for *environment*
flags, with no identity: segment overrides (which match identities by their
traits) and identity overrides do not apply to it, whatever they serve. So
the check reads the flag once through the same source a reader runs, until it
shows the asked-for value or the time is up.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from breakglass.seams import Served
from breakglass_flagsmith.source import FlagsmithSource

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass_flagsmith.settings import FlagsmithSettings

_RETRY_PAUSE = 0.2


def served(
    settings: FlagsmithSettings,
    flag_key: str,
    wanted: bool,  # noqa: FBT001 -- the value is the point
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Served:
    """What a reader is served, once it shows ``wanted`` (or ``timeout`` passed: then what it shows)."""
    source = FlagsmithSource(settings, flag_key)
    where = (
        f"Flagsmith SDK environment flags ({settings.mode} evaluation, no identity: "
        "segment and identity overrides do not apply)"
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            obs = source.poll_once()
            value = obs.value if type(obs.value) is bool else None
            if value is wanted:
                return Served(value, f"{where}: enabled={str(value).lower()}")
            if time.monotonic() + _RETRY_PAUSE > deadline:
                shown = obs.error or (
                    f"enabled={str(value).lower()}" if value is not None else str(obs.value)
                )
                return Served(value, f"{where}: after {timeout:g} s still {shown}")
            sleep(_RETRY_PAUSE)
    finally:
        source.close()
