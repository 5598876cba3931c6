"""Amazon SageMaker real-time endpoints: disabled by deleting the endpoint, restored exactly.

SageMaker has no "stop" for a real-time endpoint. Deleting it stops serving
and keeps the EndpointConfig and the Model, so the endpoint can be created
again under the same name with the same config and tags. Before deleting, the
switch records the config name, the tags and the Application Auto Scaling
targets and policies of its variants, and deregisters those (a scaling alarm
must not act on a stopped endpoint); the resume puts every one of them back.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from breakglass_killswitch.errors import TargetError, TargetForbidden
from breakglass_killswitch.targets import Check, Finding

if TYPE_CHECKING:
    from breakglass_killswitch.config import SageMakerTarget

_NAMESPACE = "sagemaker"
_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_GONE_OR_STOPPED = ("OutOfService", "Failed")
_TARGET_KEYS = (
    "ServiceNamespace",
    "ResourceId",
    "ScalableDimension",
    "MinCapacity",
    "MaxCapacity",
    "RoleARN",
    "SuspendedState",
)
_POLICY_KEYS = (
    "PolicyName",
    "ServiceNamespace",
    "ResourceId",
    "ScalableDimension",
    "PolicyType",
    "StepScalingPolicyConfiguration",
    "TargetTrackingScalingPolicyConfiguration",
    "PredictiveScalingPolicyConfiguration",
)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _not_found(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return (
        _code(exc) in ("ValidationException", "ResourceNotFound") and "not find" in message.lower()
    )


class AwsClients:
    """boto3 clients per region, made once (a client is thread-safe; making one reads large files)."""

    def __init__(self, timeout: float) -> None:
        self._config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        self._clients: dict[tuple[str, str | None], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, spec: SageMakerTarget) -> tuple[Any, Any]:
        """The SageMaker and Application Auto Scaling clients for the target's region."""
        key = (spec.region, spec.endpoint_url)
        with self._lock:
            if key not in self._clients:
                session = boto3.session.Session(region_name=spec.region)
                self._clients[key] = (
                    session.client(
                        "sagemaker", endpoint_url=spec.endpoint_url, config=self._config
                    ),
                    session.client(
                        "application-autoscaling",
                        endpoint_url=spec.endpoint_url,
                        config=self._config,
                    ),
                )
            return self._clients[key]


class SageMakerEndpoint:
    """One endpoint in one region."""

    def __init__(self, spec: SageMakerTarget, name: str, clients: AwsClients) -> None:
        self.name = name
        self.region = spec.region
        self.key = f"sagemaker-endpoint/{spec.region}/{name}"
        self.sm, self.aas = clients.get(spec)

    def _call(self, what: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = method(**kwargs)
        except ClientError as exc:
            code = _code(exc)
            message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
            text = f"{what} ({self.key}): {code} {message}"
            if code in (
                "AccessDeniedException",
                "AccessDenied",
                "UnrecognizedClientException",
                "InvalidSignatureException",
            ):
                raise TargetForbidden(text) from None
            raise
        except BotoCoreError as exc:
            raise TargetError(
                f"{what} ({self.key}): cannot reach SageMaker ({type(exc).__name__})"
            ) from None
        return result

    def _describe(self) -> dict[str, Any] | None:
        try:
            return self._call(
                "describe endpoint", self.sm.describe_endpoint, EndpointName=self.name
            )
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise TargetError(f"describe endpoint ({self.key}): {_code(exc)}") from None

    def _resource_ids(self, endpoint: dict[str, Any]) -> list[str]:
        return [
            f"endpoint/{self.name}/variant/{v['VariantName']}"
            for v in endpoint.get("ProductionVariants") or []
        ]

    def capture(self) -> dict[str, Any]:
        """Config name, tags, scaling targets and policies."""
        endpoint = self._describe()
        if endpoint is None:
            raise TargetError(
                f"{self.key}: the endpoint does not exist (nothing serves, nothing to record)"
            )
        tags = self._call("list tags", self.sm.list_tags, ResourceArn=endpoint["EndpointArn"]).get(
            "Tags", []
        )
        ids = self._resource_ids(endpoint)
        targets: list[dict[str, Any]] = []
        policies: list[dict[str, Any]] = []
        if ids:
            found = self._call(
                "describe scalable targets",
                self.aas.describe_scalable_targets,
                ServiceNamespace=_NAMESPACE,
                ResourceIds=ids,
            )
            targets = [
                {k: t[k] for k in _TARGET_KEYS if k in t} for t in found.get("ScalableTargets", [])
            ]
            for resource in {t["ResourceId"] for t in targets}:
                answer = self._call(
                    "describe scaling policies",
                    self.aas.describe_scaling_policies,
                    ServiceNamespace=_NAMESPACE,
                    ResourceId=resource,
                )
                policies += [
                    {k: p[k] for k in _POLICY_KEYS if k in p}
                    for p in answer.get("ScalingPolicies", [])
                ]
        return {
            "kind": "sagemaker-endpoint",
            "region": self.region,
            "name": self.name,
            "endpoint_config": endpoint["EndpointConfigName"],
            "tags": tags,
            "scalable_targets": targets,
            "scaling_policies": policies,
        }

    def _delete(self) -> None:
        try:
            self._call("delete endpoint", self.sm.delete_endpoint, EndpointName=self.name)
        except ClientError as exc:
            if not _not_found(exc):
                raise TargetError(
                    f"delete endpoint ({self.key}): {_code(exc)} {exc.response.get('Error', {}).get('Message', '')}"
                ) from None

    def halt(self, recorded: dict[str, Any], episode: str) -> list[str]:  # noqa: ARG002 -- the seam's signature
        """Deregister the scaling targets (their policies go with them), then delete the endpoint."""
        notes: list[str] = []
        for target in recorded.get("scalable_targets") or []:
            try:
                self._call(
                    "deregister scalable target",
                    self.aas.deregister_scalable_target,
                    ServiceNamespace=target["ServiceNamespace"],
                    ResourceId=target["ResourceId"],
                    ScalableDimension=target["ScalableDimension"],
                )
            except (ClientError, TargetError) as exc:
                notes.append(f"could not deregister scaling of {target['ResourceId']}: {exc}")
        self._delete()
        return notes

    def check_halted(self, recorded: dict[str, Any], *, reassert: bool) -> Check:  # noqa: ARG002
        """Gone (or out of service)."""
        endpoint = self._describe()
        if endpoint is None:
            return Check(done=True, detail="endpoint deleted (config and model kept)", serving=0)
        status = endpoint.get("EndpointStatus", "?")
        if status in _GONE_OR_STOPPED:
            return Check(done=True, detail=f"endpoint {status}", serving=0)
        notes: list[str] = []
        if reassert and status != "Deleting":
            notes.append(f"{self.key}: endpoint is {status}; deleting again")
            self._delete()
        return Check(done=False, detail=f"endpoint {status}", notes=notes)

    def resume(self, recorded: dict[str, Any]) -> list[str]:
        """Create the endpoint from the recorded config and tags, then restore scaling."""
        notes: list[str] = []
        if self._describe() is None:
            kwargs: dict[str, Any] = {
                "EndpointName": self.name,
                "EndpointConfigName": recorded["endpoint_config"],
            }
            if recorded.get("tags"):
                kwargs["Tags"] = recorded["tags"]
            try:
                self._call("create endpoint", self.sm.create_endpoint, **kwargs)
            except ClientError as exc:
                raise TargetError(
                    f"create endpoint ({self.key}): {_code(exc)} {exc.response.get('Error', {}).get('Message', '')}"
                ) from None
        for target in recorded.get("scalable_targets") or []:
            try:
                self._call("register scalable target", self.aas.register_scalable_target, **target)
            except (ClientError, TargetError) as exc:
                notes.append(f"could not restore scaling of {target['ResourceId']}: {exc}")
        for policy in recorded.get("scaling_policies") or []:
            try:
                self._call("put scaling policy", self.aas.put_scaling_policy, **policy)
            except (ClientError, TargetError) as exc:
                notes.append(f"could not restore scaling policy {policy['PolicyName']}: {exc}")
        return notes

    def check_resumed(self, recorded: dict[str, Any]) -> Check:
        """InService with the recorded config."""
        endpoint = self._describe()
        if endpoint is None:
            return Check(done=False, detail="endpoint absent")
        status, config = endpoint.get("EndpointStatus"), endpoint.get("EndpointConfigName")
        if config != recorded["endpoint_config"]:
            return Check(
                done=False,
                detail=f"endpoint config {config!r} (recorded {recorded['endpoint_config']!r})",
            )
        return Check(done=status == "InService", detail=f"endpoint {status} with config {config}")

    def describe(self) -> dict[str, Any]:
        """Status and config."""
        endpoint = self._describe()
        if endpoint is None:
            return {"target": self.key, "status": "absent"}
        return {
            "target": self.key,
            "status": endpoint.get("EndpointStatus"),
            "config": endpoint.get("EndpointConfigName"),
        }

    def preflight(self) -> list[Finding]:
        """Exists? Config present for the restore? Scaling that the halt will deregister?"""
        try:
            endpoint = self._describe()
        except TargetForbidden as exc:
            return [Finding(self.key, "error", "forbidden", str(exc))]
        if endpoint is None:
            return [Finding(self.key, "error", "not-found", f"{self.key}: no such endpoint")]
        findings: list[Finding] = []
        try:
            self._call(
                "describe endpoint config",
                self.sm.describe_endpoint_config,
                EndpointConfigName=endpoint["EndpointConfigName"],
            )
        except ClientError:
            findings.append(
                Finding(
                    self.key,
                    "risk",
                    "no-endpoint-config",
                    (
                        f"endpoint config {endpoint['EndpointConfigName']} cannot be read: a resume could not re-create the endpoint"
                    ),
                )
            )
        ids = self._resource_ids(endpoint)
        if ids:
            found = self._call(
                "describe scalable targets",
                self.aas.describe_scalable_targets,
                ServiceNamespace=_NAMESPACE,
                ResourceIds=ids,
            )
            findings.extend(
                Finding(
                    self.key,
                    "handled",
                    "sagemaker-autoscaling",
                    (
                        f"{target['ResourceId']} has Application Auto Scaling ({target.get('MinCapacity')}-"
                        f"{target.get('MaxCapacity')}): deregistered during the halt, restored on resume"
                    ),
                )
                for target in found.get("ScalableTargets", [])
            )
        return findings
