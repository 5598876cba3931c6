"""The switch's audit records reach the project's audit store through ``breakglass audit pull``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from breakglass_killswitch import Actor, Store, Switch, load_config
from breakglass_killswitch.tokens import create_token
from killswitch_tests.conftest import STANDARD_TARGETS, write_config
from killswitch_tests.support import breakglass, serving

if TYPE_CHECKING:
    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live


def test_breakglass_audit_pull_takes_the_switch_records(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    config = load_config(write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS))
    store = Store(config.state_dir)
    reader = create_token(store, "audit-puller", "viewer")
    switch = Switch(config, store)
    switch.halt(Actor("api_token", "hal"), "incident 4711")
    with pytest.raises(Exception, match="resume refused"):
        switch.resume(Actor("api_token", "hal"), "too early")

    with serving(switch) as url:
        feed = {
            "BREAKGLASS_AUDIT__FEEDS__KILLSWITCH__URL": f"{url}/v1/audit",
            "BREAKGLASS_AUDIT__FEEDS__KILLSWITCH__TOKEN": reader,
        }
        first = breakglass(tmp_path, feed, "audit", "pull", "--provider", "killswitch", "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        assert json.loads(first.stdout)[0]["stored"] == 2
        again = breakglass(tmp_path, feed, "audit", "pull", "--provider", "killswitch", "--json")
        assert json.loads(again.stdout)[0]["stored"] == 0  # the cursor moved past them
        wrong = breakglass(
            tmp_path,
            feed | {"BREAKGLASS_AUDIT__FEEDS__KILLSWITCH__TOKEN": "bgks_wrong"},
            "audit",
            "pull",
            "--provider",
            "killswitch",
        )
        assert wrong.returncode == 1
        assert "refused the token (401)" in wrong.stdout + wrong.stderr
        assert "bgks_wrong" not in wrong.stdout + wrong.stderr

    export = tmp_path / "export.jsonl"
    exported = breakglass(
        tmp_path, {}, "audit", "export", "--provider", "killswitch", "--out", str(export)
    )
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    records = [r for r in lines if r.get("schema") == "breakglass.audit/v1"]
    assert [r["vendor_event_type"] for r in records] == ["halt", "resume-refused"]
    assert records[0]["actor"]["id"] == "hal"
    assert records[0]["raw"]["verdict"] == "HALTED"
    verified = breakglass(tmp_path, {}, "audit", "verify", str(export))
    assert verified.returncode == 0, verified.stdout + verified.stderr
