"""``breakglass halt`` and ``breakglass resume`` reach the kill switch too (``[killswitch]``): stop wins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from breakglass_killswitch.tokens import create_token
from killswitch_tests.cluster import NS
from killswitch_tests.support import breakglass, control_plane_switch, serving

if TYPE_CHECKING:
    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live


def test_the_flag_and_the_kill_switch_halt_and_resume_together(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    key_file, store, switch = control_plane_switch(tmp_path, kube)
    halter = create_token(store, "control-plane", "halter")

    with serving(switch) as url:
        env = {
            "BREAKGLASS_KILLSWITCH__URL": url,
            "BREAKGLASS_KILLSWITCH__TOKEN": halter,
            "BREAKGLASS_KILLSWITCH__SWITCH": "test-switch",
            "BREAKGLASS_KILLSWITCH__SIGNING_KEY": str(key_file),
            "BREAKGLASS_MAX_STALENESS": "5",
        }
        assert breakglass(tmp_path, env, "resume", "--reason", "first start").returncode == 0

        halted = breakglass(
            tmp_path, env, "halt", "--actor", "oncall", "--reason", "incident 4711", "--json"
        )
        assert halted.returncode == 0, halted.stdout + halted.stderr
        targets = {t["target"]: t for t in json.loads(halted.stdout)["targets"]}
        assert targets["local"]["ok"] is True
        assert targets["killswitch"]["ok"] is True, targets["killswitch"]
        assert kube.pod_count(NS, "app=model-server", serving_only=False) == 0
        assert switch.status()["state"] == "halted"
        assert switch.status()["episode"]["opened_by"] == "control-plane"

        resumed = breakglass(
            tmp_path, env, "resume", "--actor", "approver", "--reason", "fixed", "--json"
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3
        assert switch.status()["state"] == "active"

        # Without the signing key this side can still halt, but the switch stays halted on resume.
        breakglass(tmp_path, env, "halt", "--reason", "again")
        unsigned = {k: v for k, v in env.items() if not k.endswith("SIGNING_KEY")}
        refused = breakglass(tmp_path, unsigned, "resume", "--reason", "no key")
        assert refused.returncode != 0
        assert "killswitch: NOT changed" in refused.stderr
        assert "NOT RESUMED everywhere" in refused.stderr
        assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 0
    switch.close()
