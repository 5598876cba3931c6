"""breakglass-killswitch: the second, independent halt.

Scales an inference service to zero on Kubernetes (scale subresource, with
HPA, KEDA and KServe handled) or disables an Amazon SageMaker endpoint,
verifies that nothing serves, and restores exactly what it recorded only with
a resume authorisation. It imports nothing of the flag path.
"""

from __future__ import annotations

from breakglass_killswitch.config import SwitchConfig, load_config, parse_config
from breakglass_killswitch.errors import (
    ConfigError,
    KillswitchError,
    NothingHaltedError,
    ResumeRefused,
    StoreError,
    TargetError,
    TargetForbidden,
)
from breakglass_killswitch.store import Store
from breakglass_killswitch.switch import Actor, Report, Switch

__all__ = [
    "Actor",
    "ConfigError",
    "KillswitchError",
    "NothingHaltedError",
    "Report",
    "ResumeRefused",
    "Store",
    "StoreError",
    "Switch",
    "SwitchConfig",
    "TargetError",
    "TargetForbidden",
    "load_config",
    "parse_config",
]
