"""Fixtures: a local Kubernetes API server, a moto server for SageMaker, a switch config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from killswitch_tests.cluster import standard
from killswitch_tests.kubeserver import KubeApiServer

if TYPE_CHECKING:
    from collections.abc import Iterator

REGION = "eu-west-1"
ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def kube() -> Iterator[KubeApiServer]:
    """A running API server holding the standard inference namespace."""
    server = KubeApiServer(drain_delay=0.6, start_delay=0.1).start()
    standard(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto in server mode, driven over HTTP by boto3 like AWS itself."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def endpoint(moto_server: str, request: pytest.FixtureRequest) -> str:
    """A SageMaker endpoint InService, with tags and auto scaling, unique to the test."""
    name = f"fraud-{abs(hash(request.node.nodeid)) % 10**8}"
    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_server)
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud:7"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-cfg",
        ProductionVariants=[
            {
                "VariantName": "main",
                "ModelName": name,
                "InitialInstanceCount": 2,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(
        EndpointName=name, EndpointConfigName=f"{name}-cfg", Tags=[{"Key": "team", "Value": "risk"}]
    )
    aas = boto3.client("application-autoscaling", region_name=REGION, endpoint_url=moto_server)
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{name}/variant/main",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=4,
    )
    aas.put_scaling_policy(
        PolicyName=f"{name}-tracking",
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{name}/variant/main",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
        },
    )
    return name


def write_config(
    tmp: Path,
    kube: KubeApiServer | None,
    token: str | None,
    *,
    targets: str,
    moto: str | None = None,
    extra: str = "",
) -> Path:
    """A config file (and kubeconfig) for the switch under test."""
    lines = [
        'name = "test-switch"',
        f'state_dir = "{tmp / "state"}"',
        "halt_bound = 20",
        "resume_bound = 20",
        "poll_interval = 0.1",
        extra,
    ]
    if kube is not None and token is not None:
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(json.dumps(kube.kubeconfig(token)))
        lines += ["[kubernetes]", f'kubeconfig = "{kubeconfig}"', "request_timeout = 5"]
    config = tmp / "killswitch.toml"
    config.write_text("\n".join(lines) + "\n" + targets.replace("MOTO", moto or ""))
    return config


STANDARD_TARGETS = """
[[targets]]
kind = "deployment"
namespace = "inference"
names = ["model-server", "ranker", "keda-worker"]

[[targets]]
kind = "inferenceservice"
namespace = "inference"
names = ["sklearn-iris"]
"""

SAGEMAKER_TARGET = """
[[targets]]
kind = "sagemaker-endpoint"
region = "eu-west-1"
names = ["ENDPOINT"]
endpoint_url = "MOTO"
"""


def kubectl_path() -> str:
    """Debian's kubectl (``make kubectl`` unpacks the kubernetes-client package under .tools/)."""
    chosen = os.environ.get("BREAKGLASS_KUBECTL") or str(
        ROOT / ".tools" / "kubernetes-client" / "usr" / "bin" / "kubectl"
    )
    if not Path(chosen).is_file():
        found = shutil.which("kubectl") if os.environ.get("BREAKGLASS_KUBECTL") is None else None
        pytest.fail(
            f"no kubectl at {chosen}: run `make kubectl` (unpacks Debian's kubernetes-client with apt-get download)"
            + (
                f"; a kubectl is on PATH at {found}, set BREAKGLASS_KUBECTL to use it"
                if found
                else ""
            )
        )
    return chosen


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the local server."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(kubeconfig.parent),
        "KUBECONFIG": str(kubeconfig),
    }
    result = subprocess.run(
        [kubectl_path(), "--request-timeout=10s", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def load(data: str) -> Any:
    return json.loads(data)
