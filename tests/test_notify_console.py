"""The console's Notifications panel in a real browser: per group sent / delivered / acknowledged, and the button.

Screenshots go next to serve's, under ``build/test-output/console/``; axe-core finds
no serious or critical violation in the panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, expect

from tests.notify_receivers import Receivers, wait_until
from tests.test_notify_serve import _serving
from tests.test_serve_console import axe, browser, console, shots

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["tests.notify_fixtures"]
pytestmark = pytest.mark.live

__all__ = ["axe", "browser", "shots"]  # the fixtures this module borrows


def test_the_panel_shows_each_group_and_acknowledges(
    browser: Browser, axe: str, shots: Path, tmp_path: Path, receivers: Receivers
) -> None:
    with _serving(tmp_path, receivers) as serve:
        with serve.client("halter") as client:
            sid = client.post("/v1/halt", json={"reason": "drift"}).json()["suspension_id"]
        assert wait_until(lambda: len(receivers.requests) >= 3)
        with console(browser, serve, axe, shots, viewport={"width": 1280, "height": 900}) as c:
            c.login("viewer")
            panel = c.page.locator("#notifications")
            expect(panel).to_be_visible()
            expect(panel.get_by_role("row", name="on-call")).to_contain_text("no")
            expect(panel.get_by_role("button", name="Acknowledge for deployers")).to_be_visible()
            c.check_axe("notifications panel")
            c.shot("notify-01-panel")
            panel.get_by_role("button", name="Acknowledge for on-call").click()
            expect(c.page.locator("#notifications")).to_contain_text("by token:viewer-1 (console)")
            expect(c.page.get_by_role("button", name="Acknowledge for on-call")).to_have_count(0)
            c.check_axe("notifications panel, acknowledged")
            c.shot("notify-02-acknowledged")
        notifier = serve.server.services.extra["notifier"]
        (ack,) = notifier.outbox.acks(sid)
    assert (ack.group, ack.actor, ack.via) == ("on-call", "token:viewer-1", "console")


def test_an_ended_session_no_longer_shows_who_acknowledged(
    browser: Browser, axe: str, shots: Path, tmp_path: Path, receivers: Receivers
) -> None:
    with _serving(tmp_path, receivers) as serve:
        with serve.client("halter") as client:
            assert client.post("/v1/halt", json={"reason": "drift"}).status_code == 200
        assert wait_until(lambda: len(receivers.requests) >= 3)
        with console(browser, serve, axe, shots) as c:
            c.login("viewer")
            panel = c.page.locator("#notifications")
            expect(panel.get_by_role("row", name="on-call")).to_contain_text("no")
            expect(panel.get_by_role("button", name="Acknowledge for on-call")).to_be_enabled()
            c.end_sessions_of("viewer-1")
            expect(c.page.locator("#decision")).to_have_text("UNKNOWN", timeout=10_000)
            # Who was told and who acknowledged is no longer known here: neither the last table
            # (its "no" would read as "nobody has acknowledged") nor a button the server refuses.
            expect(panel.locator(":scope > :not(h2)")).to_have_text(
                "Unknown: logged out. Log in again to see who was notified and who acknowledged."
            )
            expect(panel.get_by_role("table")).to_have_count(0)
            expect(panel.get_by_role("button")).to_have_count(0)
            c.check_axe("notifications panel, session ended")
            c.shot("notify-03-session-ended")
