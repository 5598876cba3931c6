"""The procedure's policy: one TOML file, validated at start-up.

The settings (:mod:`breakglass.settings`) say how this process reaches the flag;
the policy says what the organisation has decided about a break-glass: who is
told and how (``[notify]``), who may resume and after which checks
(``[resume]``), and what the annual drill runs and must show (``[drill]``). Each concern is one section,
one pydantic model; the root :class:`Policy` lists them. A section is added by
adding a field to :class:`Policy`, with a default so older files stay valid.

Every key is checked: an unknown key, a wrong type or a missing value stops
the start with one line per problem that names the key
(``notify.groups.on-call.channels.0.routing_key: field required``), never
the value, which may be a secret. A value of the form ``env:NAME`` in a
secret field is read from the environment variable ``NAME`` instead, so the
file itself can be committed.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from breakglass.drill.plan import DrillPlan
from breakglass.errors import ConfigurationError
from breakglass.notify.config import NotifyPolicy
from breakglass.policy_types import PolicyModel
from breakglass.resume.config import ResumePolicy
from breakglass.settings import POLICY_FILE_ENV

DEFAULT_POLICY_FILE = "breakglass-policy.toml"


class Policy(PolicyModel):
    """The whole policy file. Sections not written take their defaults."""

    version: int = Field(default=1, ge=1, le=1)
    """The policy format; this breakglass reads version 1."""

    notify: NotifyPolicy = Field(default_factory=NotifyPolicy)
    """Who is told of a halt or a resume, how, and within which time (``[notify]``)."""

    resume: ResumePolicy = Field(default_factory=ResumePolicy)
    """What must hold before the system runs again (``[resume]``): checked as soon as a
    policy file exists, with the defaults when the section is not written."""

    drill: DrillPlan | None = None
    """The annual drill (``[drill]``): absent, ``breakglass drill run`` refuses to start."""

    @model_validator(mode="after")
    def _drill_names(self) -> Policy:
        # The drill names groups and checklist items of the other sections: a typo there
        # would make a drill that checks nothing, so it stops the start like any other.
        if self.drill is None:
            return self
        unknown = [g for g in self.drill.groups if g not in self.notify.groups]
        if unknown:
            raise ValueError(f"drill.groups: not in [notify.groups]: {', '.join(unknown)}")
        items = {i.id for i in self.resume.checklist}
        missing = [c.item for c in self.drill.criteria if c.item not in items]
        if missing:
            raise ValueError(f"drill.criteria: not in the [resume] checklist: {', '.join(missing)}")
        return self


def policy_file() -> Path:
    """The policy file: ``$BREAKGLASS_POLICY_FILE``, else ``breakglass-policy.toml`` here."""
    return Path(os.environ.get(POLICY_FILE_ENV) or DEFAULT_POLICY_FILE)


def parse_policy(data: dict[str, Any], source: str = "policy") -> Policy:
    """Validate already-parsed TOML data.

    Raises:
        ConfigurationError: One line per problem, each naming its key.
    """
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(describe_errors(exc, source)) from None


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate the policy file (``path``, else :func:`policy_file`).

    Raises:
        ConfigurationError: The file is missing, is not TOML, or has invalid keys.
    """
    path = path or policy_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"policy file {path} does not exist (set {POLICY_FILE_ENV} or pass --policy)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read policy file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"policy file {path} is not valid TOML: {exc}") from None
    return parse_policy(data, str(path))


def describe_errors(exc: ValidationError, source: str) -> str:
    """One line, the problems apart by ``; ``: ``invalid policy <source>: <dotted.key>: <what is wrong>``.

    One line, because every error is printed scrubbed of control characters: a newline would show
    as a literal backslash-n. The input is never repeated (it may hold a secret).
    """
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and section)"
        lines.append(f"{key}: {message}")
    return f"invalid policy {source}: " + "; ".join(lines)
