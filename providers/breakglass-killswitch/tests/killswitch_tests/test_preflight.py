"""Pre-flight finds what would undo a halt; a halt that is undone is NOT HALTED, said loudly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from killswitch_tests.cluster import NS, argocd_app
from killswitch_tests.conftest import STANDARD_TARGETS, kubectl, write_config
from killswitch_tests.support import cli

if TYPE_CHECKING:
    from pathlib import Path

    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live


# A dozen CLI processes, each loading the kubernetes client: slow on a loaded machine.
@pytest.mark.timeout(360)
def test_preflight_reports_argocd_self_heal_and_the_halt_it_undoes(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    kube.put(argocd_app("ranker-gitops", {f"Deployment/{NS}/ranker": 2}))
    # The tests' default bound (20 s) is generous on purpose: the machine may be loaded.
    config = write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS)

    checked = cli(config, "preflight", "--json")
    assert checked.returncode == 4, checked.stdout + checked.stderr
    findings = json.loads(checked.stdout)["findings"]
    codes = {(f["target"], f["code"]): f for f in findings}
    risk = codes[("deployment/inference/ranker", "argocd-self-heal")]
    assert risk["severity"] == "risk"
    assert "argocd/ranker-gitops has self-heal on and tracks /spec/replicas" in risk["detail"]
    assert "ignoreDifferences" in risk["detail"]
    # The safe setup (self-heal, but /spec/replicas ignored) is not a risk.
    assert ("deployment/inference/model-server", "argocd-self-heal") not in codes
    assert codes[("deployment/inference/ranker", "hpa-scale-from-zero")]["severity"] == "handled"
    assert codes[("deployment/inference/keda-worker", "keda")]["severity"] == "handled"
    assert codes[("deployment/inference/model-server", "hpa")]["severity"] == "info"

    text = cli(config, "preflight")
    assert "RISK     argocd-self-heal" in text.stdout

    # Halting anyway (a halt is never refused): Argo CD puts the replicas back, so it is not halted.
    halted = cli(config, "halt", "--reason", "incident", "--json")
    assert halted.returncode == 3
    report = json.loads(halted.stdout)
    assert report["verdict"] == "NOT HALTED"
    failed = [t for t in report["targets"] if not t["ok"]]
    assert [t["target"] for t in failed] == ["deployment/inference/ranker"], failed
    assert any("set back to 2 by someone else" in n for n in failed[0]["notes"])
    assert "NOT HALTED: 1 of 4 targets did not reach zero within 20 s" in halted.stderr
    # Everything else is halted: one bad target does not hold the others back.
    assert kube.pod_count(NS, "app=model-server") == 0
    assert kube.pod_count(NS, "app=ranker") > 0

    # Once Argo CD ignores /spec/replicas, the same halt holds.
    app = kube.get("argoproj.io", "applications", "argocd", "ranker-gitops")
    app["spec"]["ignoreDifferences"] = [
        {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}
    ]
    kube.put(app)
    assert cli(config, "preflight").returncode == 0
    assert cli(config, "halt", "--reason", "incident").returncode == 0


def test_preflight_says_what_the_switch_cannot_read(tmp_path: Path, kube: KubeApiServer) -> None:
    targets = STANDARD_TARGETS.replace('"keda-worker"]', '"keda-worker", "ghost"]')
    rules = [(NS, {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]})]
    config = write_config(
        tmp_path, kube, kube.token("system:serviceaccount:ks:narrow", rules), targets=targets
    )

    checked = cli(config, "preflight", "--json")

    assert checked.returncode == 4
    findings = json.loads(checked.stdout)["findings"]
    by_target = {(f["target"], f["code"]) for f in findings}
    assert ("deployment/inference/ghost", "not-found") in by_target
    assert ("inferenceservice/inference/sklearn-iris", "forbidden") in by_target
    unreadable = [f for f in findings if f["code"] in ("argocd-unreadable", "unreadable")]
    assert unreadable, findings
    kubectl(tmp_path / "kubeconfig", "get", "deploy", "model-server", "-n", NS)
