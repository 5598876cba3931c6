"""The ``[notify]`` section of the policy: groups, channels, timeframes, deployers, delivery.

A halt is announced to every **group** whose conditions match the halt
request, through each of the group's **channels** at once. A group has a
**timeframe**: ``timeframe = "immediate"`` (acknowledge within ``ack_within``,
15 minutes unless set) or ``within = "4h"``. When nobody of the group has
acknowledged by then, the group is **escalated**: its ``escalation_channels``
are sent and the groups named in ``escalate_to`` are told. Deployers are a
group of kind ``deployers``: they receive the templated deployer notice,
each through the channels of its entry in ``[notify.deployers]``.

See ``docs/notifications.md`` for a complete file.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from breakglass.policy_types import Duration, PolicyModel, Secret

_STANDARD_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MIN_WEBHOOK_KEY_BYTES = 16

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


class Severity(enum.StrEnum):
    """How grave the halt is, as the person who halted judged it (most grave first)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class GroupKind(enum.StrEnum):
    """The role a group plays in the procedure."""

    ON_CALL = "on-call"
    GOVERNANCE_LEAD = "governance-lead"
    DPO_LIAISON = "dpo-liaison"
    SENIOR_MANAGEMENT = "senior-management"
    DEPLOYERS = "deployers"
    CUSTOM = "custom"


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


HttpUrlStr = Annotated[str, AfterValidator(_http_url)]


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be lower case letters, digits, '-' or '_' (at most 63)"
        )
    return value


class DeliveryPolicy(PolicyModel):
    """How hard a notification is tried (per channel, or for all in ``[notify.delivery]``)."""

    max_attempts: int = Field(default=12, ge=1, le=100)
    """Attempts in all; after the last the notification is marked NOT DELIVERED."""
    first_delay: Duration = timedelta(seconds=1)
    """The wait before the first retry; it doubles (with jitter) up to ``max_delay``."""
    max_delay: Duration = timedelta(minutes=5)
    """The longest wait between two attempts."""
    max_retry_after: Duration = timedelta(minutes=10)
    """The longest ``Retry-After`` obeyed; a longer one is cut to this."""
    give_up_after: Duration = timedelta(hours=24)
    """No attempt starts later than this after the notification was stored."""
    timeout: Duration = timedelta(seconds=10)
    """Each attempt's time limit (connect, send and answer)."""

    @model_validator(mode="after")
    def _ordered(self) -> DeliveryPolicy:
        if self.first_delay > self.max_delay:
            raise ValueError("first_delay must not exceed max_delay")
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be positive")
        return self


class _ChannelBase(PolicyModel):
    id: str | None = None
    """A name for this channel within its group (default: its type, numbered when repeated)."""
    delivery: DeliveryPolicy | None = None
    """Overrides ``[notify.delivery]`` for this channel."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, "channel id")


class PagerDutyChannel(_ChannelBase):
    """PagerDuty Events API v2: trigger on halt, resolve on resume (``dedup_key`` per suspension)."""

    type: Literal["pagerduty"]
    routing_key: Secret
    """The integration's 32-character routing key (the credential)."""
    url: HttpUrlStr = "https://events.pagerduty.com/v2/enqueue"
    """The Events API endpoint (EU accounts: ``https://events.eu.pagerduty.com/v2/enqueue``)."""


class OpsgenieResponder(PolicyModel):
    """Who Opsgenie should alert: a team, user, escalation or schedule, by name or id."""

    type: Literal["team", "user", "escalation", "schedule"]
    name: str | None = None
    id: str | None = None
    username: str | None = None

    @model_validator(mode="after")
    def _named(self) -> OpsgenieResponder:
        if not (self.name or self.id or self.username):
            raise ValueError("give name, id or username")
        return self


class OpsgenieChannel(_ChannelBase):
    """Opsgenie Alert API (``alias`` per suspension). Atlassian ends Opsgenie on 5 April 2027."""

    type: Literal["opsgenie"]
    api_key: Secret
    """An API integration's key, sent as ``Authorization: GenieKey …``."""
    url: HttpUrlStr = "https://api.opsgenie.com"
    """The API base (EU: ``https://api.eu.opsgenie.com``)."""
    responders: list[OpsgenieResponder] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=lambda: ["breakglass"])


class SlackChannel(_ChannelBase):
    """A Slack incoming webhook (its URL is the credential)."""

    type: Literal["slack"]
    webhook_url: Secret


class TeamsChannel(_ChannelBase):
    """A Microsoft Teams Workflows webhook ("post to a channel when a webhook request is received")."""

    type: Literal["teams"]
    webhook_url: Secret
    """The workflow's URL; its ``sig=`` parameter is the credential."""


class EmailChannel(_ChannelBase):
    """E-mail over SMTP (standard library)."""

    type: Literal["email"]
    to: list[str] = Field(min_length=1)
    sender: str = Field(alias="from")
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    """``starttls`` (port 587), ``tls`` (implicit TLS, port 465) or ``none`` (a local relay only)."""
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = None
    """A CA bundle to trust instead of the system's (a private relay's certificate)."""

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _auth(self) -> EmailChannel:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.password is not None and self.security == "none":
            raise ValueError("a password is never sent without TLS: set security")
        return self


class WebhookChannel(_ChannelBase):
    """A generic HTTPS webhook signed per Standard Webhooks (``webhook-id``/``-timestamp``/``-signature``)."""

    type: Literal["webhook"]
    url: Secret
    secret: Secret
    """The signing secret, ``whsec_`` followed by base64 (as the receiver's library expects)."""
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("secret")
    @classmethod
    def _standard_base64(cls, value: SecretStr) -> SecretStr:
        # Checked here, not at the first send: a secret the signer cannot decode would leave the
        # group unalerted on every halt, and one in the URL-safe alphabet would be decoded into
        # another key (the decoder drops '-' and '_') whose signatures every receiver refuses.
        key = value.get_secret_value().removeprefix("whsec_")
        if not _STANDARD_BASE64.fullmatch(key):
            raise ValueError(
                "secret must be 'whsec_' followed by standard base64 (A-Z, a-z, 0-9, '+', '/')"
            )
        bare = key.rstrip("=")
        try:
            decoded = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
        except binascii.Error:
            raise ValueError("secret is not valid base64 after 'whsec_'") from None
        if len(decoded) < _MIN_WEBHOOK_KEY_BYTES:
            raise ValueError(f"secret must decode to at least {_MIN_WEBHOOK_KEY_BYTES} bytes")
        return value


Channel = Annotated[
    PagerDutyChannel
    | OpsgenieChannel
    | SlackChannel
    | TeamsChannel
    | EmailChannel
    | WebhookChannel,
    Field(discriminator="type"),
]


class Conditions(PolicyModel):
    """When a group is told: every condition given must hold (none given: always)."""

    personal_data_affected: bool | None = None
    """Only when the halt request says personal data processing is (``true``) or is not affected."""
    business_continuity: bool | None = None
    """Only when the halt request says the incident has business continuity implications."""
    severity: list[Severity] = Field(default_factory=list)
    """Only for these severities (any, when empty)."""


def _name_channels(channels: list[Channel]) -> list[Channel]:
    """Give every channel an id, unique within its list (``slack``, ``slack-2``…)."""
    seen: dict[str, int] = {}
    named: list[Channel] = []
    for channel in channels:
        base = channel.id or channel.type
        seen[base] = seen.get(base, 0) + 1
        if channel.id is not None and seen[base] > 1:
            raise ValueError(f"channel id {base!r} is used twice")
        cid = base if seen[base] == 1 else f"{base}-{seen[base]}"
        named.append(channel if channel.id == cid else channel.model_copy(update={"id": cid}))
    return named


Channels = Annotated[list[Channel], AfterValidator(_name_channels)]
"""A list of channels, each given a unique id."""


class Group(PolicyModel):
    """People told together, through the same channels, within the same time."""

    kind: GroupKind
    description: str = ""
    channels: Channels = Field(default_factory=list)
    timeframe: Literal["immediate"] | None = None
    """``"immediate"``: told at once, acknowledged within ``ack_within``."""
    within: Duration | None = None
    """Told at once, acknowledged within this time (``"4h"``); instead of ``timeframe``."""
    ack_within: Duration = timedelta(minutes=15)
    """For an immediate group: escalate when nobody acknowledged within this time."""
    when: Conditions = Field(default_factory=Conditions)
    escalate_to: list[str] = Field(default_factory=list)
    """Groups told when this group has not acknowledged in time."""
    escalation_channels: Channels = Field(default_factory=list)
    """Further channels tried when this group has not acknowledged in time."""

    @model_validator(mode="after")
    def _consistent(self) -> Group:
        if (self.timeframe is None) == (self.within is None):
            raise ValueError('give either timeframe = "immediate" or within = "<duration>"')
        if self.kind is GroupKind.DEPLOYERS:
            if self.channels:
                raise ValueError(
                    "a deployers group uses the channels of each [notify.deployers.<id>] entry"
                )
        elif not self.channels:
            raise ValueError("a group needs at least one channel")
        return self

    @property
    def deadline(self) -> timedelta:
        """How long the group has to acknowledge."""
        return self.within if self.within is not None else self.ack_within

    @property
    def immediate(self) -> bool:
        """Whether the group's timeframe is ``immediate``."""
        return self.timeframe == "immediate"


class Deployer(PolicyModel):
    """An organisation that uses the system and must be told it is suspended (Art. 26)."""

    name: str
    channels: Channels = Field(min_length=1)
    contact: str | None = None
    """Whom this deployer should contact (overrides ``[notify.deployer_notice] contact``)."""


class DeployerNotice(PolicyModel):
    """The notice deployers receive on halt and on resume, and their public status page."""

    what_to_do: str = (
        "Stop relying on the system's outputs and follow your documented fallback procedure."
    )
    contact: str = "your account contact"
    next_update: Duration = timedelta(hours=2)
    """When the next update is promised, counted from the halt."""


class NotifyPolicy(PolicyModel):
    """The ``[notify]`` section."""

    system: str = "the AI system"
    """The system's name as people read it in every message."""
    console_url: HttpUrlStr | None = None
    """The operator console's base URL, for links in messages (``https://breakglass.example.org``)."""
    public_url: HttpUrlStr | None = None
    """The base URL of the public status pages (default: ``console_url``)."""
    ack_secret: Secret | None = None
    """Signs the acknowledgement links in e-mails and Slack messages (32+ random bytes)."""
    ack_link_ttl: Duration = timedelta(hours=24)
    pagerduty_webhook_secrets: list[Secret] = Field(default_factory=list)
    """Signing secrets of the PagerDuty v3 webhook subscriptions that acknowledge (two while rotating)."""
    default_severity: Severity = Severity.HIGH
    """The severity of a halt whose request names none."""
    delivery: DeliveryPolicy = Field(default_factory=DeliveryPolicy)
    groups: dict[str, Group] = Field(default_factory=dict)
    deployers: dict[str, Deployer] = Field(default_factory=dict)
    deployer_notice: DeployerNotice = Field(default_factory=DeployerNotice)

    @field_validator("groups", "deployers")
    @classmethod
    def _names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            _check_name(name, "name")
        return value

    @model_validator(mode="after")
    def _references(self) -> NotifyPolicy:
        for name, group in self.groups.items():
            for target in group.escalate_to:
                if target not in self.groups:
                    raise ValueError(f"groups.{name}.escalate_to: no group named {target!r}")
                if target == name:
                    raise ValueError(
                        f"groups.{name}.escalate_to: a group cannot escalate to itself"
                    )
            if group.kind is GroupKind.DEPLOYERS and not self.deployers:
                raise ValueError(f"groups.{name}: a deployers group needs [notify.deployers.<id>]")
        if self.ack_secret is not None and len(self.ack_secret.get_secret_value()) < 32:
            raise ValueError("ack_secret must be at least 32 characters")
        return self

    @property
    def status_base(self) -> str | None:
        """Where the public status pages are served."""
        return self.public_url or self.console_url
