"""Targets chosen by label selector, and StatefulSets through their own scale subresource."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from breakglass_killswitch import Actor, Store, Switch, load_config
from killswitch_tests.cluster import NS, deployment
from killswitch_tests.conftest import write_config

if TYPE_CHECKING:
    from pathlib import Path

    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live

TARGETS = """
[[targets]]
kind = "statefulset"
namespace = "inference"
selector = "app.kubernetes.io/part-of=model"

[[targets]]
kind = "deployment"
namespace = "inference"
selector = "app in (ranker, keda-worker)"
"""


def test_selectors_resolve_at_halt_and_the_resume_follows_the_record(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    kube.put(deployment("embedder", 2, kind="StatefulSet"))
    loaded = load_config(write_config(tmp_path, kube, kube.token(), targets=TARGETS))
    switch = Switch(loaded, Store(loaded.state_dir))

    report = switch.halt(Actor("user", "oncall"), "incident")

    assert report.ok, report.summary()
    assert sorted(o.target for o in report.outcomes) == [
        "deployment/inference/keda-worker",
        "deployment/inference/ranker",
        "statefulset/inference/embedder",
    ]
    assert kube.get("apps", "statefulsets", NS, "embedder")["spec"]["replicas"] == 0
    assert kube.pod_count(NS, "app=embedder", serving_only=False) == 0
    assert (
        kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3
    )  # not selected

    # A workload that starts matching after the halt is not "restored" by the resume.
    late = deployment("late", 1)
    late["metadata"]["labels"]["app"] = "ranker"
    kube.put(late)
    switch.approve(Actor("api_token", "alice"), "ok")
    switch.approve(Actor("api_token", "bob"), "ok")
    resumed = switch.resume(Actor("user", "oncall"), "fixed")

    assert resumed.ok, resumed.summary()
    assert sorted(o.target for o in resumed.outcomes) == sorted(o.target for o in report.outcomes)
    assert kube.get("apps", "statefulsets", NS, "embedder")["spec"]["replicas"] == 2
    assert kube.get("apps", "deployments", NS, "ranker")["spec"]["replicas"] == 2
    switch.close()


def test_a_selector_that_matches_nothing_is_not_halted(tmp_path: Path, kube: KubeApiServer) -> None:
    targets = TARGETS.replace("app.kubernetes.io/part-of=model", "app=nothing-here")
    loaded = load_config(write_config(tmp_path, kube, kube.token(), targets=targets))
    switch = Switch(loaded, Store(loaded.state_dir))

    report = switch.halt(Actor("user", "oncall"), "incident")

    assert not report.ok
    assert (
        "the selector matches nothing" in report.summary() or "no target found" in report.summary()
    )
    assert (
        kube.get("apps", "deployments", NS, "ranker")["spec"]["replicas"] == 0
    )  # the rest is halted
    switch.close()
