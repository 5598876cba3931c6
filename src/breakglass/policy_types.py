"""Building blocks of the policy file's sections: strict models, durations and secrets.

Every section of :mod:`breakglass.policy` is made of these, so each feature's
section behaves the same: unknown keys are errors, durations read ``"4h"``,
secrets may be given as ``env:NAME`` and never print.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr

_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PolicyModel(BaseModel):
    """Base of every policy section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def parse_duration(value: object) -> object:
    """``"4h"``, ``"90s"``, ``"1h30m"``, ``"250ms"`` or a number of seconds -> :class:`timedelta`."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration such as '30s', '15m' or '4h'")  # noqa: TRY004 -- pydantic wants ValueError
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError("a duration such as '30s', '15m' or '4h'")  # noqa: TRY004 -- pydantic wants ValueError
    text = value.strip().lower().replace(" ", "")
    pos = 0
    seconds = 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match["n"]) * _UNITS[match["unit"]]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration such as '30s', '15m', '4h' or '1h30m'")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A duration written as ``"4h"``, ``"15m"``, ``"30s"`` (or seconds as a number)."""


def resolve_secret(value: object) -> object:
    """Read ``env:NAME`` from the environment; keep any other value as it is."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(raw, str) and raw.startswith("env:"):
        name = raw[4:].strip()
        found = os.environ.get(name)
        if not found:
            raise ValueError(f"the environment variable {name} is not set (or empty)")
        return SecretStr(found)
    return value


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
"""A secret: written literally or as ``env:NAME``; never printed, logged or echoed in an error."""
