"""``breakglass halt`` and ``breakglass resume`` reach the kill switch too (``[killswitch]``): stop wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from breakglass_killswitch import Store, Switch, load_config
from breakglass_killswitch.authorisation import private_key_pem, public_key_text
from breakglass_killswitch.tokens import create_token
from killswitch_tests.cluster import NS
from killswitch_tests.conftest import STANDARD_TARGETS, write_config
from killswitch_tests.support import serving

if TYPE_CHECKING:
    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live
BREAKGLASS = str(Path(sys.executable).parent / "breakglass")


def _breakglass(
    tmp_path: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    clean |= {"BREAKGLASS_STATE_DIR": str(tmp_path / "bridge"), "BREAKGLASS_MAX_STALENESS": "5"}
    return subprocess.run(
        [BREAKGLASS, *args],
        capture_output=True,
        text=True,
        env=clean | env,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )


def test_the_flag_and_the_kill_switch_halt_and_resume_together(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "control-plane.pem"
    key_file.write_bytes(private_key_pem(key))
    extra = f'[resume]\ncontrol_plane_keys = ["{public_key_text(key.public_key())}"]\n'
    config = load_config(
        write_config(tmp_path, kube, kube.token(), targets=extra + STANDARD_TARGETS)
    )
    store = Store(config.state_dir)
    halter = create_token(store, "control-plane", "halter")
    switch = Switch(config, store)

    with serving(switch) as url:
        env = {
            "BREAKGLASS_KILLSWITCH__URL": url,
            "BREAKGLASS_KILLSWITCH__TOKEN": halter,
            "BREAKGLASS_KILLSWITCH__SWITCH": "test-switch",
            "BREAKGLASS_KILLSWITCH__SIGNING_KEY": str(key_file),
        }
        assert _breakglass(tmp_path, env, "resume", "--reason", "first start").returncode == 0

        halted = _breakglass(
            tmp_path, env, "halt", "--actor", "oncall", "--reason", "incident 4711", "--json"
        )
        assert halted.returncode == 0, halted.stdout + halted.stderr
        targets = {t["target"]: t for t in json.loads(halted.stdout)["targets"]}
        assert targets["local"]["ok"] is True
        assert targets["killswitch"]["ok"] is True, targets["killswitch"]
        assert kube.pod_count(NS, "app=model-server", serving_only=False) == 0
        assert switch.status()["state"] == "halted"
        assert switch.status()["episode"]["opened_by"] == "control-plane"

        resumed = _breakglass(
            tmp_path, env, "resume", "--actor", "approver", "--reason", "fixed", "--json"
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3
        assert switch.status()["state"] == "active"

        # Without the signing key this side can still halt, but the switch stays halted on resume.
        _breakglass(tmp_path, env, "halt", "--reason", "again")
        unsigned = {k: v for k, v in env.items() if not k.endswith("SIGNING_KEY")}
        refused = _breakglass(tmp_path, unsigned, "resume", "--reason", "no key")
        assert refused.returncode != 0
        assert "killswitch: NOT changed" in refused.stderr
        assert "NOT RESUMED everywhere" in refused.stderr
        assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 0
    switch.close()
