"""Errors raised by the kill switch, rooted in one class.

::

    KillswitchError
    ├── ConfigError          the config file is missing, malformed or invalid; names the key
    ├── StoreError           the switch's own SQLite store cannot be read or written
    ├── TargetError          a target could not be read or changed (names it, never a credential)
    │   └── TargetForbidden  the platform refused the switch's credentials (401/403)
    ├── NothingHaltedError   a resume was asked for while nothing is halted
    └── ResumeRefused        a resume without a valid authorisation; says what is missing

The switch stands alone: these do not derive from the core's ``BreakglassError``
on purpose, so the switch imports nothing of the flag path.
"""

from __future__ import annotations


class KillswitchError(Exception):
    """Base class of every error the kill switch raises."""


class ConfigError(KillswitchError):
    """The configuration is missing or invalid. The message names the key to fix."""


class StoreError(KillswitchError):
    """The switch's own store cannot be used."""


class TargetError(KillswitchError):
    """A halt target could not be read or changed."""


class TargetForbidden(TargetError):  # noqa: N818 -- reads as what happened
    """The platform refused the switch's credentials for this target (401/403)."""


class NothingHaltedError(KillswitchError):
    """There is no open halt to resume."""


class ResumeRefused(KillswitchError):  # noqa: N818 -- reads as what happened
    """A resume was refused: the authorisation is missing, forged, stale or insufficient.

    Attributes:
        missing: One line per unmet requirement.
    """

    def __init__(self, message: str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
