"""breakglass: a fail-closed, tested stop button for high-risk AI systems.

One boolean flag, ``system-active`` (true = may run), read before every
inference request and served through OpenFeature from the flag vendor you
already use, or from the embedded ``local`` provider. The flag reads
``False`` whenever breakglass is not sure it is ``True``.
"""

from breakglass.audit import AuditQuery, AuditRecorder, AuditStore, open_audit_store
from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.bridge import Bridge, open_bridge
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.engine import StateEngine
from breakglass.errors import (
    AdminAuthError,
    AdminError,
    AdminNotFoundError,
    AdminRejectedError,
    AdminUnavailableError,
    AuditRecordError,
    AuditSourceError,
    AuditStoreError,
    BreakglassError,
    ConfigurationError,
    ProbeError,
    ProviderNotFoundError,
    StoreError,
    StoreMissingError,
)
from breakglass.guard import DrainResult, Guard, GuardStats, Refusal, Suspended, Ticket
from breakglass.observation import NoValue, Observation
from breakglass.persistence import StateStore
from breakglass.plugins import available_providers, load_plugin
from breakglass.provider import DEFAULT_DOMAIN, SystemActiveProvider, register
from breakglass.seams import (
    Acknowledgement,
    AuditPage,
    AuditSource,
    Backend,
    FlagAdmin,
    FlagSource,
    ProviderPlugin,
)
from breakglass.settings import Settings, load_section, load_settings
from breakglass.state import Cause, FlagState, decide

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DOMAIN",
    "SYSTEM_CLOCK",
    "Acknowledgement",
    "Action",
    "Actor",
    "ActorKind",
    "AdminAuthError",
    "AdminError",
    "AdminNotFoundError",
    "AdminRejectedError",
    "AdminUnavailableError",
    "AuditPage",
    "AuditQuery",
    "AuditRecord",
    "AuditRecordError",
    "AuditRecorder",
    "AuditSource",
    "AuditSourceError",
    "AuditStore",
    "AuditStoreError",
    "Backend",
    "BreakglassError",
    "Bridge",
    "Cause",
    "Clock",
    "ConfigurationError",
    "DrainResult",
    "FlagAdmin",
    "FlagSource",
    "FlagState",
    "Guard",
    "GuardStats",
    "NoValue",
    "Observation",
    "ProbeError",
    "ProviderNotFoundError",
    "ProviderPlugin",
    "Refusal",
    "Settings",
    "StateEngine",
    "StateStore",
    "StoreError",
    "StoreMissingError",
    "Suspended",
    "SystemActiveProvider",
    "Ticket",
    "__version__",
    "available_providers",
    "decide",
    "load_plugin",
    "load_section",
    "load_settings",
    "open_audit_store",
    "open_bridge",
    "register",
]
