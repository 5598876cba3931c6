"""``breakglass drill`` exercising the kill switch on the local Kubernetes API server.

The whole drill of the core (serve, readers, receivers on loopback) with the
plan's ``[drill.kill_switch]`` pointing at ``breakglass-killswitch serve``: the
drill halts through the switch, reads back that every workload is scaled to
nothing, has two approvers approve, resumes it, and reads back that it is
running again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from breakglass.audit.signing import load_signer
from breakglass.drill.cli import run_and_record
from breakglass.drill.local import local_environment
from breakglass.policy import load_policy

from breakglass_killswitch import Store, Switch, load_config
from breakglass_killswitch.tokens import create_token
from killswitch_tests.cluster import NS
from killswitch_tests.conftest import STANDARD_TARGETS, write_config
from killswitch_tests.support import serving

if TYPE_CHECKING:
    from pathlib import Path

    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live


def test_a_drill_halts_and_resumes_through_the_kill_switch(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    (tmp_path / "switch").mkdir()
    config = load_config(
        write_config(tmp_path / "switch", kube, kube.token(), targets=STANDARD_TARGETS)
    )
    store = Store(config.state_dir)
    tokens = {
        name: create_token(store, name, role)
        for name, role in [("drill", "halter"), ("alice", "approver"), ("bob", "approver")]
    }
    switch = Switch(config, store)
    try:
        with serving(switch) as url:
            plan = {
                "url": url,
                "token": tokens["drill"],
                "approver_tokens": [tokens["alice"], tokens["bob"]],
            }
            with local_environment(tmp_path / "env", kill_switch=plan) as env:
                data, _ = run_and_record(
                    env.settings,
                    load_policy(env.policy_path),
                    load_signer(env.signing_key),
                    env.evidence_dir,
                    progress=None,
                )
    finally:
        switch.close()

    verdicts = {r["id"]: r["verdict"] for r in data["requirements"]}
    assert verdicts["kill-switch"] == "pass", data["kill_switch"]
    assert data["verdict"] == "passed", data["deficiencies"]
    ks = data["kill_switch"]
    assert ks["halt_verdict"] == "HALTED"
    assert ks["state_after_halt"] == "halted"
    assert ks["targets"]
    assert all(t["halted"] for t in ks["targets"])
    assert ks["resume_verdict"] == "RESUMED"
    assert ks["state_after_resume"] == "active"
    assert any(c["check"] == "kill switch reachable" and c["ok"] for c in data["preflight"])
    assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3
