"""The switch's configuration: one small TOML file, validated with pydantic.

Example (see the README for every key)::

    name = "prod-eu"
    halt_bound = 120

    [kubernetes]
    kubeconfig = "/etc/killswitch/kubeconfig"   # in-cluster when unset

    [[targets]]
    kind = "deployment"
    namespace = "inference"
    selector = "app.kubernetes.io/part-of=model"

    [[targets]]
    kind = "sagemaker-endpoint"
    region = "eu-west-1"
    names = ["fraud-scoring"]

    [resume]
    control_plane_keys = ["<base64 Ed25519 public key>"]
    approvals_required = 2
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from breakglass_killswitch.errors import ConfigError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_SELECTOR = re.compile(r"^[A-Za-z0-9./_\-=!, ()]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number of seconds")
    return value


class KubeTarget(_Strict):
    """Kubernetes workloads chosen by names or by a label selector in one namespace."""

    kind: Literal["deployment", "statefulset", "inferenceservice"]
    namespace: str
    names: tuple[str, ...] = ()
    selector: str | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes namespace name")
        return value

    @field_validator("names")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a Kubernetes object name")
        return value

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not _SELECTOR.match(value)):
            raise ValueError(f"{value!r} is not a label selector")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> KubeTarget:
        if bool(self.names) == (self.selector is not None):
            raise ValueError("give either names or selector (exactly one)")
        return self


class SageMakerTarget(_Strict):
    """Amazon SageMaker real-time endpoints, by name."""

    kind: Literal["sagemaker-endpoint"]
    region: str
    names: tuple[str, ...]
    endpoint_url: str | None = None
    """Only for tests and private endpoints; the AWS default otherwise."""

    @field_validator("names")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one endpoint")
        for name in value:
            if not _SAGEMAKER_NAME.match(name):
                raise ValueError(f"{name!r} is not a SageMaker endpoint name")
        return value


Target = Annotated[KubeTarget | SageMakerTarget, Field(discriminator="kind")]


class KubernetesConfig(_Strict):
    """How the switch reaches the cluster: a kubeconfig, else the pod's ServiceAccount."""

    kubeconfig: Path | None = None
    context: str | None = None
    argocd_namespaces: tuple[str, ...] = ("argocd",)
    """Where pre-flight looks for Argo CD Applications (read only)."""
    request_timeout: float = Field(default=10.0, gt=0, le=120)

    _check_timeout = field_validator("request_timeout")(_finite)


class ResumeConfig(_Strict):
    """What a resume needs: a control-plane signature, or enough approvals of the switch's own."""

    control_plane_keys: tuple[str, ...] = ()
    """Ed25519 public keys (base64 of the 32 raw bytes, or PEM) whose signed authorisations count."""
    approvals_required: int = Field(default=2, ge=1, le=20)
    """Distinct approvers (tokens with role ``approver``) needed when no signature is given."""
    max_token_age: float = Field(default=900.0, gt=0, le=86400)
    """The longest lifetime (``exp - iat``, seconds) a signed authorisation may claim."""

    _check_age = field_validator("max_token_age")(_finite)


class ServeConfig(_Strict):
    """``breakglass-killswitch serve``."""

    host: str = "127.0.0.1"
    port: int = Field(default=8095, ge=0, le=65535)
    tls_cert: Path | None = None
    """A PEM certificate (chain): serve HTTPS, so tokens never cross a network in clear text."""
    tls_key: Path | None = None
    failed_tokens: int = Field(default=10, ge=1, le=10_000)
    """Wrong or missing tokens per client address answered 401 in ``failed_token_window``;
    past it, 429 with ``Retry-After``. A valid token is never refused for its address."""
    failed_token_window: float = Field(default=60.0, gt=0, le=86_400)
    """Seconds over which ``failed_tokens`` are counted."""

    _check_window = field_validator("failed_token_window")(_finite)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServeConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        return self


class SwitchConfig(_Strict):
    """The whole file."""

    name: str
    """This switch's name: signed resume authorisations are bound to it."""
    flag_key: str = "system-active"
    """The key its audit records carry, so they sit beside the flag's history."""
    audit_provider: str = "killswitch"
    state_dir: Path = Path("killswitch-state")
    halt_bound: float = Field(default=120.0, gt=0, le=3600)
    """Seconds a halt may take until verified; past it the halt is reported NOT HALTED."""
    resume_bound: float = Field(default=300.0, gt=0, le=3600)
    poll_interval: float = Field(default=0.5, gt=0, le=30)
    kubernetes: KubernetesConfig = KubernetesConfig()
    targets: tuple[Target, ...]
    resume: ResumeConfig = ResumeConfig()
    serve: ServeConfig = ServeConfig()

    _check_bounds = field_validator("halt_bound", "resume_bound", "poll_interval")(_finite)

    @field_validator("name", "audit_provider")
    @classmethod
    def _label(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r}: use lower-case letters, digits and '-'")
        return value

    @field_validator("targets")
    @classmethod
    def _some(cls, value: tuple[Target, ...]) -> tuple[Target, ...]:
        if not value:
            raise ValueError("name at least one target")
        return value

    @property
    def has_kubernetes(self) -> bool:
        """Whether any target lives on Kubernetes."""
        return any(isinstance(t, KubeTarget) for t in self.targets)


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_config(text: str, *, source: str = "config") -> SwitchConfig:
    """Validate TOML text.

    Raises:
        ConfigError: One line naming the first bad key.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not TOML: {exc}") from None
    try:
        return SwitchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_config(path: Path) -> SwitchConfig:
    """Read and validate the config file; relative paths in it are taken from its folder."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8") from None
    config = parse_config(text, source=str(path))
    base = path.resolve().parent
    updates: dict[str, object] = {}
    if not config.state_dir.is_absolute():
        updates["state_dir"] = base / config.state_dir
    kube = config.kubernetes
    if kube.kubeconfig is not None and not kube.kubeconfig.is_absolute():
        updates["kubernetes"] = kube.model_copy(update={"kubeconfig": base / kube.kubeconfig})
    return config.model_copy(update=updates) if updates else config
