"""The console's resume panel in a real browser (Debian's chromium through Playwright, axe-core injected).

An approver sees what is missing, confirms the checklist with answers, is refused when approving
before the checklist is complete and when approving twice, is refused a resume that lacks the
second approval; a second approver approves and resumes; then the held decisions are released
and discarded from the console. Screenshots of each state go under
``build/test-output/console/<test>/``.
"""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, expect

from breakglass.hold import HoldStore
from breakglass.serve.auth import Role
from breakglass.serve.store import SqliteServeStore
from breakglass.testing.serve import running_serve
from tests.resume_policies import CHECKLIST
from tests.test_serve_console import axe, browser, console, shots

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.live

__all__ = ["axe", "browser", "shots"]  # the fixtures this module borrows

POLICY = (
    """
[resume]
approvals = 2
"""
    + CHECKLIST
    + """
[[resume.checklist]]
id = "deployers"
text = "Deployers informed"
role = "halter"
answer = "none"
"""
)


def test_resume_panel_lists_what_is_missing_and_resumes_with_two_approvers(  # noqa: PLR0915 -- one story
    browser: Browser, axe: str, shots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(tmp_path / "policy.toml"))
    with running_serve(tmp_path) as serve:
        _, serve.tokens["approver-2"] = serve.server.services.tokens.create(
            "approver-2", Role.APPROVER, by="test setup"
        )
        assert serve.wait_active(True)
        with serve.client("halter") as client:
            assert client.post("/v1/halt", json={"reason": "refusals spiked"}).status_code == 200
        assert serve.wait_active(False)
        holds = HoldStore(SqliteServeStore(tmp_path / "serve.db"))
        for applicant in ("a-17", "a-18"):
            holds.hold(
                "credit-decision",
                {"applicant": applicant, "outcome": "refused"},
                because="halted (off: the flag is off)",
            )

        view = {"viewport": {"width": 1280, "height": 1000}}
        with console(browser, serve, axe, shots, **view) as c:
            page = c.page
            c.login("approver")
            panel = page.locator("#resume")
            expect(panel).to_contain_text("Still missing (4)")
            expect(panel).to_contain_text("checklist: root-cause not ticked")
            expect(panel).to_contain_text("approvals: 0 of 2")
            expect(panel).to_contain_text("then 2 distinct approvers approve.")
            expect(page.locator("#held-wait")).to_be_visible()
            expect(page.get_by_role("button", name="Release selected")).to_have_count(0)
            c.check_axe("resume panel, nothing done")
            c.shot("resume-01-missing")

            page.get_by_role("button", name="Approve the resume as approver-1").click()
            expect(page.get_by_role("alert")).to_contain_text(
                "approve once the checklist and conditions are complete"
            )
            c.shot("resume-02-approval-refused")

            page.locator("#answer-root-cause").fill("an unscaled income feature after a deploy")
            page.get_by_role("button", name="Confirm: Root cause identified").click()
            expect(page.locator("#check-root-cause")).to_contain_text("Ticked by token:approver-1")
            page.locator("#answer-risk").fill("re-assessed with the risk board")
            page.get_by_role("button", name="Confirm: Risk re-assessed").click()
            page.get_by_role("button", name="Confirm: Deployers informed").click()
            expect(panel).to_contain_text("Still missing (1)")
            page.get_by_role("button", name="Approve the resume as approver-1").click()
            expect(page.locator("#approvals")).to_contain_text("Approved by token:approver-1")
            page.get_by_label("Precautionary").check()
            page.get_by_label("Why it is safe to run again (required)").fill("fix deployed")
            page.get_by_role("button", name="Resume the system").click()
            expect(page.get_by_role("alert")).to_contain_text("approvals: 1 of 2")
            c.shot("resume-03-one-approval-resume-refused")
            page.get_by_role("button", name="Approve the resume as approver-1").click()
            expect(page.get_by_role("alert")).to_contain_text("has approved this resume already")
            c.check_axe("resume panel, refused twice")
            c.shot("resume-04-same-person-refused")
        assert serve.server.bridge.engine.active is False

        with console(browser, serve, axe, shots, **view) as c:
            page = c.page
            c.login("approver-2")
            page.get_by_role("button", name="Approve the resume as approver-2").click()
            expect(page.locator("#gate-missing")).to_contain_text("The gate is satisfied")
            c.check_axe("resume panel, satisfied")
            c.shot("resume-05-satisfied")
            page.get_by_label("Precautionary").check()
            page.get_by_label("Why it is safe to run again (required)").fill(
                "fix deployed and verified on staging"
            )
            page.get_by_role("button", name="Resume the system").click()
            expect(page.locator("#decision")).to_have_text("ACTIVE", timeout=10_000)
            expect(page.locator("#resume")).to_contain_text("No open suspension")

            held = page.locator("#held")
            expect(held).to_contain_text("Held decisions (2)")
            c.check_axe("held decisions")
            c.shot("resume-06-held-decisions")
            held.get_by_role("checkbox").first.check()
            page.get_by_label("Why (required)").fill("reviewed: the decision stands")
            page.get_by_role("button", name="Release selected").click()
            expect(page.locator("#held")).to_contain_text("Held decisions (1)")
            page.locator("#held").get_by_role("checkbox").first.check()
            page.get_by_label("Why (required)").fill("re-score after the fix")
            page.get_by_role("button", name="Discard selected").click()
            expect(page.locator("#held")).to_contain_text("No decisions held.")
            c.shot("resume-07-reviewed")
            # The suspension report, from the history, in the same login.
            with page.expect_navigation():
                page.locator("#history").get_by_role("link", name="HTML").first.click()
            expect(page.get_by_role("heading", name="Suspension report")).to_be_visible()
            expect(page.locator("body")).to_contain_text("Closed as precautionary")
            c.shot("resume-08-report")
        states = sorted(h.state for h in holds.decisions(("released", "discarded")))
        assert states == ["discarded", "released"]
        assert serve.wait_active(True)


def test_one_approval_reads_one_approver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "policy.toml").write_text("[resume]\napprovals = 1\n" + CHECKLIST, encoding="utf-8")
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(tmp_path / "policy.toml"))
    with running_serve(tmp_path) as serve:
        with serve.client("halter") as client:
            assert client.post("/v1/halt", json={"reason": "drift"}).status_code == 200
        c, _ = serve.console("approver")
        with closing(c):
            page = c.get("/").text
    assert "then one approver approves." in page
    assert "approvers approve" not in page
