"""Faults on the Kubernetes side: conflicts, RBAC, a dead API server, a lost store, a second halt."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import pytest
import yaml

from breakglass_killswitch import Actor, Store, Switch, load_config
from breakglass_killswitch.rbac import render_rbac
from breakglass_killswitch.workloads import ANN_REPLICAS
from killswitch_tests.cluster import NS
from killswitch_tests.conftest import STANDARD_TARGETS, write_config
from killswitch_tests.support import CLI

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live
OPERATOR = Actor("user", "oncall@test")


def _switch(config: Path) -> Switch:
    loaded = load_config(config)
    return Switch(loaded, Store(loaded.state_dir))


def _approve_twice(switch: Switch) -> None:
    switch.approve(Actor("api_token", "alice"), "checked")
    switch.approve(Actor("api_token", "bob"), "checked")


def _rules(config: Path) -> list[tuple[str, dict[str, Any]]]:
    """The Role rules `breakglass-killswitch rbac` renders, as the server enforces them."""
    docs = list(yaml.safe_load_all(render_rbac(load_config(config))))
    return [
        (d["metadata"]["namespace"], rule)
        for d in docs
        if d["kind"] == "Role"
        for rule in d["rules"]
    ]


def test_conflicts_are_retried_with_a_fresh_read(tmp_path: Path, kube: KubeApiServer) -> None:
    switch = _switch(write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS))
    kube.inject_conflicts("PUT", "/deployments/model-server/scale", 2)
    kube.inject_conflicts("PATCH", "/deployments/model-server", 1)

    report = switch.halt(OPERATOR, "incident")

    assert report.ok, report.summary()
    writes = [
        (m, code)
        for m, path, _, code in kube.log
        if path.endswith("/deployments/model-server/scale") and m == "PUT"
    ]
    assert writes == [("PUT", 409), ("PUT", 409), ("PUT", 200)]
    assert (
        kube.get("apps", "deployments", NS, "model-server")["metadata"]["annotations"][ANN_REPLICAS]
        == "3"
    )


def test_the_rendered_rbac_is_enough_and_nothing_more_is_used(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    bootstrap = write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS)
    token = kube.token(
        "system:serviceaccount:breakglass-killswitch:breakglass-killswitch", _rules(bootstrap)
    )
    switch = _switch(write_config(tmp_path, kube, token, targets=STANDARD_TARGETS))

    assert switch.preflight() is not None
    halted = switch.halt(OPERATOR, "incident")
    assert halted.ok, halted.summary()
    _approve_twice(switch)
    resumed = switch.resume(OPERATOR, "fixed")
    assert resumed.ok, resumed.summary()
    assert [entry for entry in kube.log if entry[3] == 403] == []
    assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3


def test_without_the_scale_permission_the_halt_says_not_halted_and_why(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    bootstrap = write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS)
    rules = [(ns, r) for ns, r in _rules(bootstrap) if "deployments/scale" not in r["resources"]]
    switch = _switch(
        write_config(
            tmp_path,
            kube,
            kube.token("system:serviceaccount:ks:weak", rules),
            targets=STANDARD_TARGETS,
        )
    )

    report = switch.halt(OPERATOR, "incident")

    assert not report.ok
    assert report.summary().startswith("NOT HALTED: 3 of 4 targets")
    failed = {o.target: o.error for o in report.outcomes if not o.ok}
    assert 'cannot get resource "deployments/scale"' in str(
        failed["deployment/inference/model-server"]
    )
    # The InferenceService needs no scale permission: it is halted regardless.
    assert kube.pod_count(NS, "serving.kserve.io/inferenceservice=sklearn-iris") == 0


def test_a_dead_api_server_is_not_halted_within_the_bound(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    config = write_config(
        tmp_path, kube, kube.token(), targets=STANDARD_TARGETS, extra="halt_bound = 5"
    )
    config.write_text(config.read_text().replace("halt_bound = 20\n", ""))
    switch = _switch(config)
    kube.stop()

    report = switch.halt(OPERATOR, "incident")

    assert not report.ok
    assert report.elapsed_s < 60
    assert "cannot reach the Kubernetes API server" in report.summary()
    assert switch.store.open_episode() is not None  # the halt is on record, to be completed


def test_a_frozen_api_server_is_not_halted_and_the_halt_still_returns(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    config = write_config(
        tmp_path, kube, kube.token(), targets=STANDARD_TARGETS, extra="halt_bound = 4"
    )
    config.write_text(
        config.read_text()
        .replace("halt_bound = 20\n", "")
        .replace("request_timeout = 5", "request_timeout = 2")
    )
    switch = _switch(config)
    kube.frozen.set()  # connections open, no answers: like a SIGSTOPped API server

    report = switch.halt(OPERATOR, "incident")

    assert not report.ok
    assert report.summary().startswith("NOT HALTED")
    # The report comes at the bound, whatever the platform does (with slack for a loaded machine).
    assert report.elapsed_s < 4 + 10
    assert "no answer from the platform within the bound" in report.summary()


def test_a_switch_killed_mid_halt_loses_nothing(tmp_path: Path, kube: KubeApiServer) -> None:
    config = write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS)
    kube.hang = (
        "PUT",
        "/deployments/model-server/scale",
    )  # the process dies right before the scale lands
    process = subprocess.Popen(
        [CLI, "--config", str(config), "halt", "--reason", "incident"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    # Recorded and annotated: the scale request is the next one, and it never gets an answer.
    while ANN_REPLICAS not in (
        kube.get("apps", "deployments", NS, "model-server")["metadata"].get("annotations") or {}
    ):
        if time.monotonic() > deadline:
            pytest.fail("the halt never annotated the Deployment")
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    kube.hang = None
    assert (
        kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3
    )  # not halted yet

    switch = _switch(config)
    assert switch.halt(OPERATOR, "again, after the kill").ok
    episode = switch.store.open_episode()
    assert episode is not None
    assert switch.store.recorded(episode.id)["deployment/inference/model-server"]["replicas"] == 3
    _approve_twice(switch)
    assert switch.resume(OPERATOR, "fixed").ok
    assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3


def test_a_second_halt_keeps_the_first_record_and_a_lost_store_falls_back_to_the_annotation(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    config = write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS)
    switch = _switch(config)
    assert switch.halt(OPERATOR, "incident").ok
    assert switch.halt(OPERATOR, "again").ok  # replicas are 0 now; 3 stays recorded
    episode = switch.store.open_episode()
    assert episode is not None
    assert switch.store.recorded(episode.id)["deployment/inference/model-server"]["replicas"] == 3

    # The switch's disk is lost: a new store, a new halt, the annotation still says 3.
    shutil.rmtree(tmp_path / "state")
    switch = _switch(config)
    assert switch.halt(OPERATOR, "after losing the store").ok
    _approve_twice(switch)
    resumed = switch.resume(OPERATOR, "fixed")
    assert resumed.ok, resumed.summary()
    assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3
    assert kube.get("apps", "deployments", NS, "keda-worker")["spec"]["replicas"] == 2
    assert not kube.get("keda.sh", "scaledobjects", NS, "keda-worker")["metadata"].get(
        "annotations"
    )
    assert (
        kube.get("autoscaling", "horizontalpodautoscalers", NS, "ranker")["spec"]["minReplicas"]
        == 0
    )
    isvc = kube.get("serving.kserve.io", "inferenceservices", NS, "sklearn-iris")
    assert not isvc["metadata"].get("annotations")


def test_a_pod_still_starting_at_the_halt_is_waited_for(tmp_path: Path) -> None:
    """A Pending pod is not yet serving, but it is about to: the halt is verified only once it is gone."""
    from killswitch_tests.cluster import inference_service
    from killswitch_tests.kubeserver import KubeApiServer

    # Pods take 1 s to start and 2 s to drain: a pod created just before the halt turns Running
    # while it is being deleted, as a container that already started keeps answering.
    kube = KubeApiServer(drain_delay=2.0, start_delay=1.0).start()
    selector = "serving.kserve.io/inferenceservice=sklearn-iris"
    try:
        targets = STANDARD_TARGETS[STANDARD_TARGETS.index('[[targets]]\nkind = "inference') :]
        switch = _switch(write_config(tmp_path, kube, kube.token(), targets=targets))
        switch.prepare()  # the cluster client is loaded: the halt starts at once
        kube.put(inference_service("sklearn-iris"))
        assert kube.pod_count(NS, selector, serving_only=False) == 1
        assert kube.pod_count(NS, selector) == 0  # Pending

        report = switch.halt(OPERATOR, "incident")

        assert report.ok, report.summary()
        assert kube.pod_count(NS, selector, serving_only=False) == 0, report.summary()
        time.sleep(1.0)  # past the moment the pod would have turned Running
        assert kube.pod_count(NS, selector) == 0
    finally:
        kube.stop()
