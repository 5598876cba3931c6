"""Halt and resume end to end: the real kubernetes client on the local API server, boto3 on moto."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from breakglass_killswitch import Actor, ResumeRefused, Store, Switch, load_config
from breakglass_killswitch.authorisation import public_key_text, sign_resume
from breakglass_killswitch.workloads import ANN_REPLICAS, KEDA_PAUSED_REPLICAS, KSERVE_STOP
from killswitch_tests.conftest import REGION, SAGEMAKER_TARGET, STANDARD_TARGETS, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live
OPERATOR = Actor("user", "oncall@test")


def _switch(
    tmp_path: Path, kube: KubeApiServer, moto: str, endpoint: str, key: Ed25519PrivateKey
) -> Switch:
    extra = f'[resume]\ncontrol_plane_keys = ["{public_key_text(key.public_key())}"]\n'
    path = write_config(
        tmp_path,
        kube,
        kube.token(),
        moto=moto,
        extra="",
        targets=extra + STANDARD_TARGETS + SAGEMAKER_TARGET.replace("ENDPOINT", endpoint),
    )
    config = load_config(path)
    return Switch(config, Store(config.state_dir))


def test_halt_verifies_zero_and_resume_restores_exactly(  # noqa: PLR0915 -- one story, start to end
    tmp_path: Path, kube: KubeApiServer, moto_server: str, endpoint: str
) -> None:
    key = Ed25519PrivateKey.generate()
    switch = _switch(tmp_path, kube, moto_server, endpoint, key)
    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_server)
    aas = boto3.client("application-autoscaling", region_name=REGION, endpoint_url=moto_server)
    assert kube.pod_count("inference", "app=model-server") == 3

    report = switch.halt(OPERATOR, "incident 4711: harmful outputs")

    assert report.ok, report.summary()
    assert report.summary().startswith("HALTED: 5 targets verified at zero")
    for selector in (
        "app=model-server",
        "app=ranker",
        "app=keda-worker",
        "serving.kserve.io/inferenceservice=sklearn-iris",
    ):
        assert kube.pod_count("inference", selector, serving_only=False) == 0, selector
    model = kube.get("apps", "deployments", "inference", "model-server")
    assert model["spec"]["replicas"] == 0
    assert model["metadata"]["annotations"][ANN_REPLICAS] == "3"
    assert (
        kube.get("autoscaling", "horizontalpodautoscalers", "inference", "ranker")["spec"][
            "minReplicas"
        ]
        == 1
    )
    assert (
        kube.get("keda.sh", "scaledobjects", "inference", "keda-worker")["metadata"]["annotations"][
            KEDA_PAUSED_REPLICAS
        ]
        == "0"
    )
    assert (
        kube.get("serving.kserve.io", "inferenceservices", "inference", "sklearn-iris")["metadata"][
            "annotations"
        ][KSERVE_STOP]
        == "true"
    )
    with pytest.raises(sm.exceptions.ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=endpoint)
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")[
        "ScalableTargets"
    ] == [] or all(
        t["ResourceId"] != f"endpoint/{endpoint}/variant/main"
        for t in aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    )
    for outcome in report.outcomes:
        assert outcome.seconds is not None
        assert outcome.seconds < 20

    # Without an authorisation nothing comes back, and the refusal is recorded.
    with pytest.raises(ResumeRefused, match="0 of 2 approvals"):
        switch.resume(OPERATOR, "looks fine")
    assert kube.get("apps", "deployments", "inference", "model-server")["spec"]["replicas"] == 0

    status = switch.status()
    token = sign_resume(
        key,
        switch="test-switch",
        episode=status["episode"]["id"],
        issuer="breakglass-serve",
        approvers=["alice", "bob"],
        reason="root cause fixed",
    )
    resumed = switch.resume(OPERATOR, "root cause fixed", token)

    assert resumed.ok, resumed.summary()
    model = kube.get("apps", "deployments", "inference", "model-server")
    assert model["spec"]["replicas"] == 3
    assert ANN_REPLICAS not in (model["metadata"].get("annotations") or {})
    assert kube.get("apps", "deployments", "inference", "ranker")["spec"]["replicas"] == 2
    assert (
        kube.get("autoscaling", "horizontalpodautoscalers", "inference", "ranker")["spec"][
            "minReplicas"
        ]
        == 0
    )
    assert KEDA_PAUSED_REPLICAS not in (
        kube.get("keda.sh", "scaledobjects", "inference", "keda-worker")["metadata"].get(
            "annotations"
        )
        or {}
    )
    assert KSERVE_STOP not in (
        kube.get("serving.kserve.io", "inferenceservices", "inference", "sklearn-iris")[
            "metadata"
        ].get("annotations")
        or {}
    )
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == f"{endpoint}-cfg"
    assert sm.list_tags(ResourceArn=described["EndpointArn"])["Tags"] == [
        {"Key": "team", "Value": "risk"}
    ]
    targets = aas.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[f"endpoint/{endpoint}/variant/main"]
    )
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets["ScalableTargets"]] == [(1, 4)]
    policies = aas.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{endpoint}/variant/main"
    )
    assert [p["PolicyName"] for p in policies["ScalingPolicies"]] == [f"{endpoint}-tracking"]
    assert switch.status()["state"] == "active"

    # The same authorisation cannot resume a later halt.
    switch.halt(OPERATOR, "second incident")
    with pytest.raises(ResumeRefused):
        switch.resume(OPERATOR, "replay", token)
    switch.close()
