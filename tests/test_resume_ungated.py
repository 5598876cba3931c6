"""Resumes made outside the gate: a flag turned back on in the vendor's dashboard (here: written
straight into the local provider's store, as its admin API or a dashboard would) is seen by serve's
reader, recorded as ``ungated``, paged to on-call through the notification chain, and, under
``[resume] enforce = true``, undone by halting again. The gated resume then resolves every alert
and sends the deployers their notice.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.local.store import LocalStore
from breakglass.testing.serve import FLAG, Running, running_serve
from tests.notify_receivers import Receivers, wait_until
from tests.resume_policies import notify_toml

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytest_plugins = ["tests.notify_fixtures"]
pytestmark = pytest.mark.live


def _policy(receivers: Receivers, *, enforce: bool) -> str:
    return (
        notify_toml(receivers, deployers=True)
        + f"""
[resume]
approvals = 1
enforce = {"true" if enforce else "false"}
watch_grace = "300ms"
checklist = [{{ id = "root-cause", text = "Root cause identified", answer = "required" }}]
"""
    )


@pytest.fixture
def policy_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(tmp_path / "policy.toml"))
    return tmp_path / "policy.toml"


@pytest.fixture
def enforced(tmp_path: Path, policy_env: Path, receivers: Receivers) -> Iterator[Running]:
    policy_env.write_text(_policy(receivers, enforce=True), encoding="utf-8")
    with running_serve(tmp_path) as running:
        assert running.wait_active(True)
        yield running


def _record(running: Running, sid: str) -> dict[str, Any]:
    with running.client("viewer") as c:
        record: dict[str, Any] = c.get(f"/v1/suspensions/{sid}").json()
    return record


def test_dashboard_resume_is_detected_alerted_and_undone(  # noqa: PLR0915 -- one story
    enforced: Running, tmp_path: Path, receivers: Receivers
) -> None:
    with enforced.client("halter") as c:
        halted = c.post("/v1/halt", json={"reason": "complaints about refusals"})
    assert halted.status_code == 200, halted.text
    sid = halted.json()["suspension_id"]
    assert enforced.wait_active(False)
    assert wait_until(lambda: receivers.pd_incidents == [f"breakglass/{sid}/on-call"])

    # Someone with dashboard access turns the flag back on, bypassing the gate.
    dashboard = LocalStore(tmp_path / "local.db")
    flipped = time.monotonic()
    dashboard.write(FLAG, value=True, actor="someone@vendor-dashboard", reason="looks fine to me")

    # serve sees it, records it as ungated, and halts again at once.
    assert wait_until(lambda: _record(enforced, sid)["ungated"], timeout=10)
    assert wait_until(lambda: dashboard.read(FLAG) is False, timeout=10)
    undone_s = time.monotonic() - flipped
    assert enforced.wait_active(False, timeout=5)
    assert wait_until(
        lambda: _record(enforced, sid)["ungated"][0]["data"]["outcome"] == "undone", timeout=10
    )
    ungated = _record(enforced, sid)["ungated"][0]["data"]
    print(
        f"ungated resume undone {undone_s * 1000:.0f} ms after the dashboard write; "
        f"serve halted {ungated['undone_after_ms']} ms after it saw the flag on"
    )
    # The provider's propagation bound: serve's reader is never staler than max_staleness.
    bound = enforced.server.bridge.engine.max_staleness
    assert undone_s < bound, f"undone after {undone_s:.2f} s, beyond the {bound} s bound"
    assert ungated["enforce"] is True
    record = _record(enforced, sid)
    assert record["status"] == "open"
    assert any(h["actor"]["subject"] == "system:resume-gate" for h in record["halts"])

    # on-call was paged for the ungated resume: its own incident, critical.
    assert wait_until(lambda: len(receivers.pd_incidents) == 2)
    page = [r.json() for r in receivers.at("/v2/enqueue") if "ungated" in r.json()["dedup_key"]]
    assert page
    assert page[0]["event_action"] == "trigger"
    assert page[0]["payload"]["severity"] == "critical"
    assert "UNGATED RESUME" in page[0]["payload"]["summary"]

    # The gate shows it (the console's resume panel too); the gated resume closes it all.
    with enforced.client("approver") as c:
        assert c.get("/v1/resume").json()["ungated"][0]["outcome"] == "undone"
        c.post("/v1/resume/checklist/root-cause", json={"answer": "a dashboard user did not know"})
        assert c.post("/v1/resume/approvals", json={}).status_code == 200
        resumed = c.post(
            "/v1/resume", json={"reason": "retrained staff", "classification": "precautionary"}
        )
        assert resumed.status_code == 200, resumed.text
    assert enforced.wait_active(True)
    # Every alert resolved, the deployer told the system runs again.
    assert wait_until(lambda: not receivers.pd_alerts), receivers.pd_alerts
    assert receivers.wait_for("/teams/acme", 2)
    time.sleep(1.0)  # the watch must not take the gated resume for another ungated one
    final = _record(enforced, sid)
    assert final["status"] == "closed"
    assert len(final["ungated"]) == 1
    assert enforced.server.bridge.engine.active


def test_without_enforce_the_ungated_resume_is_recorded_and_alerted_but_stands(
    tmp_path: Path, policy_env: Path, receivers: Receivers
) -> None:
    policy_env.write_text(_policy(receivers, enforce=False), encoding="utf-8")
    with running_serve(tmp_path) as running:
        assert running.wait_active(True)
        with running.client("halter") as c:
            sid = c.post("/v1/halt", json={"reason": "drift"}).json()["suspension_id"]
        assert running.wait_active(False)
        LocalStore(tmp_path / "local.db").write(FLAG, value=True, actor="x", reason="y")
        assert running.wait_active(True)
        assert wait_until(lambda: _record(running, sid)["ungated"], timeout=10)
        entry = _record(running, sid)["ungated"][0]["data"]
        assert entry["outcome"] == "left running (enforce = false)"
        assert wait_until(lambda: len(receivers.pd_incidents) == 2)
        time.sleep(0.5)
        assert running.server.bridge.engine.active  # not undone
        assert _record(running, sid)["status"] == "open"  # still needs the gated resume


def test_a_halt_made_outside_serve_opens_a_suspension(
    tmp_path: Path, policy_env: Path, receivers: Receivers
) -> None:
    policy_env.write_text(_policy(receivers, enforce=True), encoding="utf-8")
    with running_serve(tmp_path) as running:
        assert running.wait_active(True)
        LocalStore(tmp_path / "local.db").write(
            FLAG, value=False, actor="ops@dashboard", reason="x"
        )
        assert running.wait_active(False)
        with running.client("viewer") as c:
            assert wait_until(lambda: c.get("/v1/resume").json()["suspension_id"], timeout=10)
            sid = c.get("/v1/resume").json()["suspension_id"]
        record = _record(running, sid)
        assert record["opened_by"].startswith("serve's reader")
        assert "outside serve" in record["reason"]
        # The notification chain was told of this halt too, naming the reader, not a token.
        assert wait_until(lambda: receivers.pd_incidents == [f"breakglass/{sid}/on-call"])
        page = receivers.at("/v2/enqueue")[0].json()
        assert "token:serve's reader" not in str(page)
        assert "serve's reader" in str(page)


def test_a_kill_switch_suspension_is_not_undone_by_a_blip_but_a_dashboard_flip_is(
    tmp_path: Path, policy_env: Path, receivers: Receivers
) -> None:
    """The kill switch halted the infrastructure, not the flag: the flag reading on again after a
    stale spell resumes nothing. Turning the flag off and on in a dashboard meanwhile is ungated."""
    import sqlite3

    from breakglass.state import Cause
    from breakglass.testing.serve import local_settings

    policy_env.write_text(_policy(receivers, enforce=True), encoding="utf-8")
    settings = local_settings(tmp_path, max_staleness=1.0)
    with running_serve(tmp_path, settings) as running:
        assert running.wait_active(True)
        with running.client("halter") as c:
            sid = c.post(
                "/v1/suspensions", json={"via": "killswitch", "reason": "scaled to zero"}
            ).json()["suspension_id"]
        # A stale spell: the local store locked for longer than max_staleness, then readable again.
        lock = sqlite3.connect(tmp_path / "local.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        assert wait_until(
            lambda: running.server.bridge.engine.state.cause is Cause.STALE, timeout=10
        )
        lock.execute("ROLLBACK")
        lock.close()
        assert running.wait_active(True, timeout=10)
        time.sleep(1.0)
        assert _record(running, sid)["ungated"] == []
        # Not undone either: the flag is still on in the store. (Not "the engine is active now":
        # a reader kept off the CPU for max_staleness on a loaded host rightly reads stale.)
        dashboard = LocalStore(tmp_path / "local.db")
        assert dashboard.read(FLAG) is True

        dashboard.write(FLAG, value=False, actor="ops", reason="off in the dashboard")
        assert wait_until(
            lambda: "reader" in [h.get("via") for h in _record(running, sid)["halts"]], timeout=10
        )
        dashboard.write(FLAG, value=True, actor="ops", reason="on again")
        assert wait_until(lambda: _record(running, sid)["ungated"], timeout=10)
        assert wait_until(lambda: dashboard.read(FLAG) is False, timeout=10)
