"""The resumption gate through serve's real API (uvicorn, local provider, SQLite store).

A resume is refused with every missing item listed; checklist items are
ticked by the role the policy names, with the answers it asks for; two
distinct approvers are needed and the same person approving twice is
refused, whichever way they ask; a person who halted may not approve when
the policy says so; the resume then turns the target back on, closes the
suspension with its classification, and writes the record into the audit chain.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from breakglass.errors import ConfigurationError
from breakglass.local.store import LocalStore
from breakglass.policy import parse_policy
from breakglass.serve.auth import Role
from breakglass.testing.serve import FLAG, Running, running_serve
from tests.resume_policies import CHECKLIST

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.live

POLICY = (
    """
[resume]
approvals = 2
halter_may_approve = false
"""
    + CHECKLIST
    + """
[[resume.checklist]]
id = "dpo"
text = "DPO consulted"
answer = "required"
when_personal_data = true

[[resume.checklist]]
id = "deployers"
text = "Deployers informed"
role = "halter"
answer = "none"

[[resume.conditions]]
id = "staging-probe"
text = "A passing probe against staging"
within = "1h"
"""
)


@pytest.fixture
def gated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(policy))
    with running_serve(tmp_path) as running:
        for name, role in (("approver-2", Role.APPROVER), ("approver-halting", Role.APPROVER)):
            _, text = running.server.services.tokens.create(name, role, by="test setup")
            running.tokens[name] = text
        assert running.wait_active(True)
        yield running


def _client(running: Running, who: str) -> httpx.Client:
    return running.client(who)


def _missing(response: httpx.Response) -> list[str]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    missing: list[str] = response.json()["missing"]
    return missing


def _probe_report(finished: datetime, *, passed: bool = True) -> dict[str, Any]:
    return {
        "passed": passed,
        "aborted": False,
        "interrupted": False,
        "finished_at": finished.isoformat(),
        "provider": "local",
    }


def test_policy_section_is_strict_and_names_the_key() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_policy({"resume": {"approvals": 0, "enforce": "maybe", "aproval": 1}})
    text = str(info.value)
    assert "resume.approvals" in text
    assert "resume.enforce" in text
    assert "resume.aproval: unknown key" in text
    with pytest.raises(ConfigurationError, match="unknown role 'owner'"):
        parse_policy({"resume": {"checklist": [{"id": "x", "text": "X", "role": "owner"}]}})
    defaults = parse_policy({}).resume
    assert defaults.approvals == 2
    assert not defaults.halter_may_approve
    assert [i.id for i in defaults.checklist] == [
        "root-cause",
        "remediation",
        "risk",
        "dpo",
        "deployers",
    ]


def test_resume_refused_until_checklist_conditions_and_two_approvers(gated: Running) -> None:  # noqa: PLR0915 -- one story, step by step
    with _client(gated, "approver-halting") as c:
        halted = c.post(
            "/v1/halt", json={"reason": "outputs look biased", "personal_data_affected": True}
        )
        assert halted.status_code == 200, halted.text
        suspension_id = halted.json()["suspension_id"]
    assert gated.wait_active(False)

    with _client(gated, "approver") as a1, _client(gated, "approver-2") as a2:
        # Nothing done: every item is listed.
        missing = _missing(a1.post("/v1/resume", json={"reason": "fine now"}))
        joined = "\n".join(missing)
        for item in ("root-cause", "risk", "dpo", "deployers", "staging-probe"):
            assert item in joined, joined
        assert "approvals: 0 of 2" in joined
        assert "classification" in joined
        gate = a1.get("/v1/resume").json()
        assert gate["gated"] is True
        assert gate["suspension_id"] == suspension_id
        assert not gate["satisfied"]

        # Approving before the checklist is complete is refused, listing what is missing.
        early = a1.post("/v1/resume/approvals", json={})
        assert early.status_code == 409
        assert any("root-cause" in m for m in early.json()["missing"])

        # Answers are required where the policy says so; roles are checked.
        assert a1.post("/v1/resume/checklist/root-cause", json={}).status_code == 422
        with _client(gated, "viewer") as viewer:
            denied = viewer.post("/v1/resume/checklist/deployers", json={})
            assert denied.status_code == 403
        assert a1.post("/v1/resume/checklist/no-such-item", json={}).status_code == 404
        for item, answer in (
            ("root-cause", "a feature pipeline shipped unscaled income"),
            ("risk", "re-assessed with the risk board"),
            ("dpo", "DPO consulted on 5 December"),
        ):
            done = a1.post(f"/v1/resume/checklist/{item}", json={"answer": answer})
            assert done.status_code == 200, done.text
        with _client(gated, "halter") as halter:
            assert halter.post("/v1/resume/checklist/deployers", json={}).status_code == 200

        # The condition: a failing or stale probe does not count, a fresh passing one does.
        now = datetime.now(UTC)
        bad = a1.post("/v1/resume/conditions/staging-probe", json=_probe_report(now, passed=False))
        assert bad.status_code == 422
        stale = a1.post(
            "/v1/resume/conditions/staging-probe", json=_probe_report(now - timedelta(hours=2))
        )
        assert stale.status_code == 422
        assert "more than 1 h ago" in stale.json()["detail"]
        good = a1.post("/v1/resume/conditions/staging-probe", json=_probe_report(now))
        assert good.status_code == 200, good.text

        # Two distinct approvers: the first one alone is not enough, twice is refused.
        first = a1.post("/v1/resume/approvals", json={"comment": "checked the fix"})
        assert first.status_code == 200, first.text
        again = a1.post("/v1/resume/approvals", json={})
        assert again.status_code == 409
        assert "already" in again.json()["detail"]
        missing = _missing(
            a1.post("/v1/resume", json={"reason": "fixed", "classification": "precautionary"})
        )
        assert missing == ["approvals: 1 of 2 (need 1 more distinct approver)"]

        # The person who halted may not approve under this policy; a halter cannot at all.
        with _client(gated, "approver-halting") as halting:
            refused = halting.post("/v1/resume/approvals", json={})
            assert refused.status_code == 403
            assert "halted this suspension" in refused.json()["detail"]
        with _client(gated, "halter") as halter:
            assert halter.post("/v1/resume/approvals", json={}).status_code == 403

        assert a2.post("/v1/resume/approvals", json={}).status_code == 200
        assert a1.get("/v1/resume").json()["missing"] == []
        # Satisfied, but the suspension must still be classified.
        assert any(
            "classification" in m for m in _missing(a2.post("/v1/resume", json={"reason": "ok"}))
        )
        assert gated.server.bridge.engine.active is False

        resumed = a2.post(
            "/v1/resume",
            json={"reason": "fix deployed and verified", "classification": "precautionary"},
        )
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["suspension_id"] == suspension_id
    assert gated.wait_active(True)

    with _client(gated, "viewer") as viewer:
        record = viewer.get(f"/v1/suspensions/{suspension_id}").json()
        assert record["status"] == "closed"
        assert record["classification"] == "precautionary"
        assert [a["by"] for a in record["approvals"]] == ["token:approver-1", "token:approver-2"]
        assert {c["id"]: c["answer"] for c in record["checklist"]}[
            "dpo"
        ] == "DPO consulted on 5 December"
        assert record["halt_time_ms"] is not None
        assert record["opened_by"] == "token:approver-halting"
        assert "never a fault" in record["good_faith"]
        # The record is in the audit chain once the suspension closed.
        deadline = time.monotonic() + 10
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            records = viewer.get("/v1/audit", params={"limit": 1000}).json()["records"]
            found = [r for r in records if r["vendor_event_type"] == "suspension-record"]
            time.sleep(0.1)
        assert found, "the suspension record never reached the audit chain"
        assert found[-1]["raw"]["id"] == suspension_id
        assert found[-1]["raw"]["classification"] == "precautionary"
        # The next halt opens a new suspension with an empty gate.
        assert viewer.get("/v1/resume").json()["suspension_id"] is None


def test_without_a_policy_an_approver_resumes_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(tmp_path / "absent.toml"))
    with running_serve(tmp_path) as running, running.client("approver") as c:
        assert c.get("/v1/resume").json()["gated"] is False
        assert c.post("/v1/halt", json={"reason": "x"}).status_code == 200
        assert c.post("/v1/resume", json={"reason": "y"}).status_code == 200


def test_cli_resume_goes_through_the_same_gate(  # noqa: PLR0915 -- one story
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from breakglass.cli import main
    from breakglass.resume.cli_gate import cli_gate
    from breakglass.serve.auth import Identity
    from breakglass.settings import load_settings

    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[resume]\napprovals = 1\n[[resume.checklist]]\nid = "root-cause"\ntext = "Root cause"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("BREAKGLASS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(policy))
    monkeypatch.chdir(tmp_path)
    run = CliRunner()
    # First start: the flag does not exist yet, nothing was halted, so nothing to gate.
    first = run.invoke(main, ["resume", "--reason", "first start"])
    assert first.exit_code == 0, first.output
    assert "first start" in first.output
    # A flag turned off where no suspension was recorded: the gate refuses, saying so.
    LocalStore(tmp_path / "state" / "local.db").write(FLAG, value=False, actor="x", reason="y")
    unrecorded = run.invoke(main, ["resume", "--reason", "r", "--classification", "drill"])
    assert unrecorded.exit_code == 4, unrecorded.output
    assert "no open suspension" in unrecorded.output

    halted = run.invoke(main, ["halt", "--actor", "bob", "--reason", "drill begins"])
    assert halted.exit_code == 0, halted.output
    gate = cli_gate(load_settings())
    assert gate is not None
    suspension = gate.store.open_suspension()
    assert suspension is not None
    assert suspension.opened_by == "bob"

    refused = run.invoke(main, ["resume", "--actor", "bob", "--reason", "done"])
    assert refused.exit_code == 4, refused.output
    assert "checklist: root-cause not ticked" in refused.output
    assert "approvals: 0 of 1" in refused.output
    assert "--classification" in refused.output

    alice = Identity("token:a1", "alice", Role.APPROVER, "token")
    gate.tick(alice, "root-cause", "drill: none")
    gate.approve(alice)
    resumed = run.invoke(
        main, ["resume", "--actor", "bob", "--reason", "done", "--classification", "drill"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert gate.store.open_suspension() is None
    closed = gate.store.suspension(suspension.id)
    assert closed is not None
    assert closed.closed_by == "bob"
    entries = gate.store.entries(suspension.id)
    assert [e.data["classification"] for e in entries if e.kind == "resume"] == ["drill"]


def test_the_gate_resists_forged_actors_bad_input_and_revoked_tokens(gated: Running) -> None:
    with _client(gated, "halter") as halter:
        assert halter.post("/v1/halt", json={"reason": "x"}).status_code == 200
    with _client(gated, "approver") as a1:
        # The approver is the token's identity: a body naming someone else is refused outright.
        forged = a1.post("/v1/resume/approvals", json={"actor": "ceo@example.org"})
        assert forged.status_code == 422
        bad_class = a1.post("/v1/resume", json={"reason": "ok", "classification": "blame"})
        assert bad_class.status_code == 422
        control = a1.post("/v1/resume/checklist/root-cause", json={"answer": "ok\x1b[2Jfake"})
        assert control.status_code == 422
        too_long = a1.post("/v1/resume/checklist/root-cause", json={"answer": "x" * 2001})
        assert too_long.status_code == 422
        assert a1.get("/v1/resume").json()["approvals"] == []
    assert gated.server.services.tokens.revoke("approver-2", by="test")
    time.sleep(0.5)  # the token list is re-read every 0.2 s here
    with _client(gated, "approver-2") as revoked:
        assert revoked.post("/v1/resume/approvals", json={}).status_code == 401
    # A console form without its CSRF token changes nothing.
    with httpx.Client(base_url=gated.url) as browserless:
        answer = browserless.post("/console/resume/approve", data={"csrf": "guess"})
        assert answer.status_code in (401, 403)
    with _client(gated, "viewer") as viewer:
        assert viewer.get("/v1/resume").json()["approvals"] == []


def test_the_documented_resume_policy_is_valid() -> None:
    """docs/resume.md's ``[resume]`` example parses as it is written."""
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "resume.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", text, re.DOTALL) if "[resume]" in b]
    policy = parse_policy(tomllib.loads(block)).resume
    assert policy.enforce
    assert [i.id for i in policy.checklist] == ["root-cause", "dpo"]
    assert policy.condition("staging-probe") is not None


def test_a_halt_made_elsewhere_is_recorded_and_gated(gated: Running) -> None:
    """The kill switch (or a person at a dashboard) reports its halt: a suspension, under the gate."""
    with _client(gated, "viewer") as viewer:
        denied = viewer.post("/v1/suspensions", json={"via": "killswitch", "reason": "x"})
        assert denied.status_code == 403
    with _client(gated, "halter") as halter:
        first = halter.post(
            "/v1/suspensions",
            json={"via": "killswitch", "reason": "scaled to zero", "incident": "INC-9"},
        )
        assert first.status_code == 201, first.text
        assert first.json()["opened"] is True
        sid = first.json()["suspension_id"]
        again = halter.post("/v1/suspensions", json={"via": "dashboard", "reason": "also off"})
        assert again.json() == {"suspension_id": sid, "opened": False}
        bad = halter.post("/v1/suspensions", json={"via": "Kill\nSwitch", "reason": "x"})
        assert bad.status_code == 422
    assert gated.server.bridge.engine.active  # recording halts nothing by itself
    with _client(gated, "approver") as a1:
        gate = a1.get("/v1/resume").json()
        assert gate["suspension_id"] == sid
        assert any("approvals: 0 of 2" in m for m in gate["missing"])
        record = a1.get(f"/v1/suspensions/{sid}").json()
        assert [h["via"] for h in record["halts"]] == ["killswitch", "dashboard"]
        assert record["opened_by"] == "token:halter-1"
        assert record["incident"] == "INC-9"
