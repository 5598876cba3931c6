"""Kubernetes access through the official client, as plain JSON dicts.

Every call has a timeout; every failure becomes a :class:`TargetError` that
names the object and the HTTP status, never a credential. A ``409 Conflict``
(someone changed the object between our read and our write) is retried after
a fresh read, a few times, so a write never overwrites a change it did not see.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
import urllib3
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from breakglass_killswitch.errors import ConfigError, TargetError, TargetForbidden

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass_killswitch.config import KubernetesConfig

T = TypeVar("T")
CONFLICT_ATTEMPTS = 5


class ConflictError(TargetError):
    """409: the object changed since it was read."""


class NotFoundError(TargetError):
    """404: the object (or its API) does not exist."""


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or "no message")[:300]


def map_error(what: str, exc: ApiException) -> TargetError:
    """The switch's error for an API answer."""
    status = exc.status or 0
    text = f"{what}: {status} {_status_message(exc)}"
    if status in (401, 403):
        return TargetForbidden(text)
    if status == 404:
        return NotFoundError(text)
    if status == 409:
        return ConflictError(text)
    return TargetError(text)


def retry_conflicts(action: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Run ``action`` (which reads, then writes with the read's resourceVersion) until no 409."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except ConflictError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


class Kube:
    """One cluster, reached with the switch's own credentials."""

    def __init__(self, settings: KubernetesConfig) -> None:
        configuration = client.Configuration()
        try:
            if settings.kubeconfig is not None:
                kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=str(settings.kubeconfig),
                    context=settings.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
            else:
                kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            where = settings.kubeconfig or "the pod's ServiceAccount (in-cluster)"
            raise ConfigError(f"kubernetes: cannot load credentials from {where}: {exc}") from None
        # A dead API server must fail within the declared bound, not after urllib3's retries.
        configuration.retries = 1
        self.host = configuration.host
        self.timeout = settings.request_timeout
        self.api = client.ApiClient(configuration)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.autoscaling = client.AutoscalingV2Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a client method, returning the answer as the wire's JSON (camelCase dicts)."""
        try:
            result = method(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            raise map_error(what, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TargetError(
                f"{what}: cannot reach the Kubernetes API server at {self.host} ({type(exc).__name__})"
            ) from None
        except (pydantic.ValidationError, ValueError) as exc:
            # The typed client checks answers against the API's schema.
            first = "; ".join(line.strip() for line in str(exc).splitlines()[:3])
            raise TargetError(
                f"{what}: the API server's answer does not fit the schema ({first})"
            ) from None
        return self.api.sanitize_for_serialization(result)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Release the connection pool."""
        self.api.close()  # type: ignore[no-untyped-call]

    # -------------------------------------------------------------- shorthands

    def list_or_empty(
        self, what: str, method: Callable[..., Any], *args: Any
    ) -> list[dict[str, Any]]:
        """A list call; an API that is not installed (404) is an empty list."""
        try:
            answer = self.call(what, method, *args)
        except NotFoundError:
            return []
        items = answer.get("items") if isinstance(answer, dict) else None
        return [i for i in items or [] if isinstance(i, dict)]

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods matching a label selector."""
        answer = self.call(
            f"list pods in {namespace} ({selector})",
            self.core.list_namespaced_pod,
            namespace,
            label_selector=selector,
        )
        return [p for p in answer.get("items") or [] if isinstance(p, dict)]


def not_finished(pod: dict[str, Any]) -> bool:
    """A pod that serves or may yet serve: anything but Succeeded or Failed.

    A halt is verified against this, not :func:`serving`: a Pending pod scheduled just before
    the halt becomes Running a moment later, so counting only Running pods could report
    zero while one is about to answer.
    """
    status = pod.get("status") or {}
    return status.get("phase") not in ("Succeeded", "Failed") or serving(pod)


def serving(pod: dict[str, Any]) -> bool:
    """A pod that may still answer: Running, or Ready (terminating ones included)."""
    status = pod.get("status") or {}
    if status.get("phase") == "Running":
        return True
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def selector_text(selector: dict[str, Any] | None) -> str:
    """A LabelSelector object as the ``labelSelector`` query string."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
