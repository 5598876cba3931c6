"""The same checks through Debian's kubectl, a second client independent of the Python one.

The switch runs as its own CLI process; kubectl (Go's client-go) reads back
what it did. If the local server spoke the API in a way only the Python client
accepts, these would fail.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from killswitch_tests.conftest import STANDARD_TARGETS, kubectl, write_config
from killswitch_tests.support import cli

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live

REPLICAS = '{range .items[*]}{.metadata.name}={.spec.replicas}{"\\n"}{end}'


def _replicas(kubeconfig: Path) -> dict[str, int]:
    out = kubectl(
        kubeconfig, "get", "deploy", "-n", "inference", "-o", f"jsonpath={REPLICAS}"
    ).stdout
    return {k: int(v) for k, v in (line.split("=") for line in out.split())}


def _annotation(kubeconfig: Path, kind: str, name: str, key: str) -> str:
    """One annotation of an object in ``inference`` as kubectl reads it (``""`` when it has none)."""
    path = key.replace(".", "\\.")  # jsonpath: a dot inside a key is escaped
    return kubectl(
        kubeconfig,
        "get",
        kind,
        name,
        "-n",
        "inference",
        "-o",
        f"jsonpath={{.metadata.annotations.{path}}}",
    ).stdout


# A dozen CLI processes, each loading the kubernetes client: slow on a loaded machine.
@pytest.mark.timeout(360)
def test_halt_and_resume_seen_through_kubectl(tmp_path: Path, kube: KubeApiServer) -> None:  # noqa: PLR0915
    key = tmp_path / "control-plane.pem"
    config = write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS)
    public = cli(config, "keygen", "--out", str(key))
    assert public.returncode == 0, public.stderr
    text = config.read_text().replace(
        "[kubernetes]",
        f'[resume]\ncontrol_plane_keys = ["{public.stdout.strip()}"]\n\n[kubernetes]',
    )
    config.write_text(text)
    kubeconfig = tmp_path / "kubeconfig"

    # kubectl sees the server as a cluster: the table, the pods, the custom resources.
    table = kubectl(kubeconfig, "get", "deploy", "-n", "inference").stdout
    assert "model-server   3/3" in table
    assert _replicas(kubeconfig) == {"keda-worker": 2, "model-server": 3, "ranker": 2}
    assert "sklearn-iris" in kubectl(kubeconfig, "get", "isvc", "-n", "inference").stdout

    halted = cli(config, "halt", "--reason", "incident 4711")
    assert halted.returncode == 0, halted.stdout + halted.stderr
    assert "HALTED: 4 targets verified at zero" in halted.stdout

    assert _replicas(kubeconfig) == {"keda-worker": 0, "model-server": 0, "ranker": 0}
    assert kubectl(kubeconfig, "get", "pods", "-n", "inference", "-o", "name").stdout.strip() == ""
    assert _annotation(kubeconfig, "isvc", "sklearn-iris", "serving.kserve.io/stop") == "true"
    paused = _annotation(
        kubeconfig, "scaledobject", "keda-worker", "autoscaling.keda.sh/paused-replicas"
    )
    assert paused == "0"
    recorded = json.loads(
        kubectl(kubeconfig, "get", "deploy", "model-server", "-n", "inference", "-o", "json").stdout
    )
    assert recorded["metadata"]["annotations"]["killswitch.breakglass.dev/replicas"] == "3"

    # Someone scales it back up with kubectl: status says so, loudly; halting again wins.
    assert (
        "scaled"
        in kubectl(
            kubeconfig, "scale", "deploy/model-server", "-n", "inference", "--replicas=3"
        ).stdout
    )
    status = json.loads(cli(config, "status", "--json").stdout)
    assert status["state"] == "NOT HALTED"
    again = cli(config, "halt", "--reason", "someone scaled it up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _replicas(kubeconfig)["model-server"] == 0

    # No authorisation, no resume: kubectl still sees zero.
    refused = cli(config, "resume", "--reason", "all clear")
    assert refused.returncode == 5
    assert "resume refused" in refused.stderr
    assert _replicas(kubeconfig) == {"keda-worker": 0, "model-server": 0, "ranker": 0}

    episode = json.loads(cli(config, "status", "--json").stdout)["episode"]["id"]
    token = cli(
        config,
        "sign-resume",
        "--key",
        str(key),
        "--switch",
        "test-switch",
        "--episode",
        episode,
        "--approver",
        "alice",
        "--approver",
        "bob",
        "--reason",
        "root cause fixed",
    )
    assert token.returncode == 0, token.stderr
    resumed = cli(
        config, "resume", "--reason", "root cause fixed", "--authorisation", "-", stdin=token.stdout
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith("RESUMED")

    assert _replicas(kubeconfig) == {"keda-worker": 2, "model-server": 3, "ranker": 2}
    restored = json.loads(
        kubectl(kubeconfig, "get", "deploy", "model-server", "-n", "inference", "-o", "json").stdout
    )
    assert "killswitch.breakglass.dev/replicas" not in (
        restored["metadata"].get("annotations") or {}
    )
    assert _annotation(kubeconfig, "isvc", "sklearn-iris", "serving.kserve.io/stop") == ""


def test_kubectl_meets_conflicts_404_and_rbac_as_from_a_cluster(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    admin = tmp_path / "admin"
    admin.mkdir()
    (admin / "kubeconfig").write_text(json.dumps(kube.kubeconfig(kube.token())))
    kubeconfig = admin / "kubeconfig"

    stale = kubectl(
        kubeconfig,
        "scale",
        "deploy/model-server",
        "-n",
        "inference",
        "--replicas=1",
        "--resource-version=1",
        check=False,
    )
    assert stale.returncode != 0
    assert "resource version" in stale.stderr.lower()

    # kubectl scale retries a 409 itself, as it does against a real API server.
    kube.inject_conflicts("PATCH", "/deployments/model-server/scale", 1)
    kubectl(kubeconfig, "scale", "deploy/model-server", "-n", "inference", "--replicas=4")
    scale_writes = [
        code
        for method, path, _, code in kube.log
        if method == "PATCH" and path.endswith("/deployments/model-server/scale")
    ]
    assert scale_writes == [409, 200]
    assert kube.get("apps", "deployments", "inference", "model-server")["spec"]["replicas"] == 4

    missing = kubectl(kubeconfig, "get", "deploy", "nope", "-n", "inference", check=False)
    assert 'deployments.apps "nope" not found' in missing.stderr

    viewer = tmp_path / "viewer"
    viewer.mkdir()
    rules = [
        (
            "inference",
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
        )
    ]
    (viewer / "kubeconfig").write_text(
        json.dumps(kube.kubeconfig(kube.token("system:serviceaccount:ops:viewer", rules)))
    )
    assert (
        "model-server" in kubectl(viewer / "kubeconfig", "get", "deploy", "-n", "inference").stdout
    )
    denied = kubectl(
        viewer / "kubeconfig",
        "scale",
        "deploy/model-server",
        "-n",
        "inference",
        "--replicas=0",
        check=False,
    )
    assert denied.returncode != 0
    assert 'cannot patch resource "deployments/scale" in API group "apps"' in denied.stderr


def test_the_three_patch_types_as_both_clients_send_them(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    from breakglass_killswitch.config import KubernetesConfig
    from breakglass_killswitch.kube import Kube

    (tmp_path / "kubeconfig").write_text(json.dumps(kube.kubeconfig(kube.token())))
    kubeconfig = tmp_path / "kubeconfig"

    def replicas() -> int:
        value: int = kube.get("apps", "deployments", "inference", "model-server")["spec"][
            "replicas"
        ]
        return value

    def patch(*options: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl(
            kubeconfig, "patch", "deploy", "model-server", "-n", "inference", *options, check=check
        )

    def patch_types() -> list[str]:
        """The content type of each patch of the deployment the server received, in order."""
        return [
            ct
            for m, p, ct, _ in kube.log
            if m == "PATCH" and p.endswith("/deployments/model-server")
        ]

    patch("--type=json", "-p", '[{"op": "replace", "path": "/spec/replicas", "value": 4}]')
    assert replicas() == 4
    patch("--type=merge", "-p", '{"spec": {"replicas": 5}}')
    assert replicas() == 5
    patch("-p", '{"spec": {"replicas": 6}}')  # kubectl's default: a strategic merge patch
    assert replicas() == 6
    assert patch_types() == [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ]

    client = Kube(KubernetesConfig(kubeconfig=kubeconfig))
    try:
        apps = client.apps
        client.call(
            "json patch",
            apps.patch_namespaced_deployment,
            "model-server",
            "inference",
            [{"op": "replace", "path": "/spec/replicas", "value": 7}],
        )
        assert replicas() == 7
        client.call(
            "strategic merge patch",
            apps.patch_namespaced_deployment,
            "model-server",
            "inference",
            {"spec": {"replicas": 8}},
        )
        assert replicas() == 8
        failed = patch(
            "--type=json",
            "-p",
            '[{"op": "test", "path": "/spec/replicas", "value": 1}]',
            check=False,
        )
        assert failed.returncode != 0
        assert "invalid" in failed.stderr.lower()  # 422, as kubectl renders it
    finally:
        client.close()
    assert patch_types()[3:5] == [
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
    ]
