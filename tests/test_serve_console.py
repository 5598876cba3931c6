"""The operator console in a real browser: Debian's chromium driven by Playwright, axe-core injected.

Log in, press STOP with the keyboard, watch every target halt and the flag turn
off, see a viewer refused, resume as an approver, see NOT HALTED when no target
answers; at 200 % zoom and on a phone. No serious or critical accessibility
violation in any state. Screenshots of each state are saved under
``build/test-output/console/`` so a person can look at them.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from breakglass.local.store import LocalStore
from breakglass.testing.npm import npm_ci
from breakglass.testing.serve import FLAG, Running, running_serve

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.live

CHROMIUM = Path("/usr/bin/chromium")
AXE_DIR = Path(__file__).parent / "browser"
SHOTS = Path(__file__).resolve().parents[1] / "build" / "test-output" / "console"


def _axe_source() -> str:
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    try:
        npm_ci(AXE_DIR, script)
    except RuntimeError as exc:
        pytest.fail(f"axe-core comes from npm: {exc}")
    return script.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            "the Debian package 'chromium' is missing (/usr/bin/chromium): "
            "run `apt-get install -y chromium` (make test does it when it can)"
        )
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def axe() -> str:
    return _axe_source()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    where = SHOTS / str(request.node.name)
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    return where


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Running]:
    with running_serve(tmp_path) as running:
        assert running.wait_active(True)
        yield running


class Console:
    """One browser context logged in to the console; fails the test on any page error or CSP violation."""

    def __init__(self, context: BrowserContext, serve: Running, axe: str, shots: Path) -> None:
        self.context = context
        self.serve = serve
        self.axe = axe
        self.shots = shots
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "console",
            lambda msg: self.errors.append(msg.text) if msg.type == "error" else None,
        )

    def login(self, role: str | None, token: str | None = None) -> None:
        self.page.goto(f"{self.serve.url}/")
        expect(self.page).to_have_url(f"{self.serve.url}/login")
        self.page.get_by_label("API token").fill(token or self.serve.tokens[str(role)])
        # The console is rendered by the server, so its text is there before its stylesheet: sizes and
        # scroll widths are measured only once the page the form leads to (stylesheet included) has loaded.
        with self.page.expect_navigation(wait_until="load"):
            self.page.get_by_role("button", name="Log in").click()

    def end_sessions_of(self, person: str) -> None:
        """An admin ends the person's console sessions, this page's among them."""
        with self.serve.client("admin") as admin:
            ended = admin.post("/v1/sessions/revocations", json={"person": person})
            assert ended.status_code == 200, ended.text

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def check_axe(self, what: str) -> None:
        # Runtime.evaluate is not subject to the page's CSP, which stays strict for the console itself.
        self.page.evaluate(self.axe + "\n;0")
        result: dict[str, Any] = self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})"
        )
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"{what}: " + "; ".join(bad)

    def no_horizontal_scroll(self, what: str) -> None:
        overflow = self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 1:
            wide = self.page.evaluate(
                """() => [...document.querySelectorAll('body *')]
                    .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                    .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"""
            )
            self.shot(f"overflow-{what.replace(' ', '-').replace(',', '')}")
            pytest.fail(f"{what}: the page scrolls sideways by {overflow}px ({wide})")

    def assert_clean(self) -> None:
        # Refusals the tests provoke on purpose (401, 403, 503) are answers, not page errors.
        provoked = ("status of 401", "status of 403", "status of 503")
        errors = [e for e in self.errors if not any(p in e for p in provoked)]
        assert not errors, errors


@contextmanager
def console(
    browser: Browser, serve: Running, axe: str, shots: Path, **options: Any
) -> Iterator[Console]:
    context = browser.new_context(**options)
    try:
        c = Console(context, serve, axe, shots)
        yield c
        c.assert_clean()
    finally:
        context.close()


def _focus_by_tab(c: Console, target: Any) -> None:
    for _ in range(6):
        if target.evaluate("el => el === document.activeElement"):
            break
        c.page.keyboard.press("Tab")
    expect(target).to_be_focused()


def _stop_with_the_keyboard(c: Console) -> None:
    """The skip link, the STOP button, the dialog: keyboard only."""
    page = c.page
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the emergency stop")).to_be_focused()
    page.keyboard.press("Enter")
    stop = page.get_by_role("button", name="STOP", exact=True)
    _focus_by_tab(c, stop)
    outline = stop.evaluate(
        "el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth"
    )
    assert outline.startswith("solid"), outline
    assert not outline.endswith(" 0px"), outline
    c.shot("04-stop-focused")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Stop the system now?")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Reason (required)")).to_be_focused()
    page.keyboard.type("Model output unsafe in ticket 4711")
    c.check_axe("stop dialog")
    c.shot("05-stop-dialog")
    page.keyboard.press("Tab")  # incident
    page.keyboard.type("INC-4711")
    confirm = page.get_by_role("button", name="Confirm STOP")
    _focus_by_tab(c, confirm)
    page.keyboard.press("Enter")


def test_halt_with_the_keyboard_then_resume_as_approver(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    with console(browser, serve, axe, shots, viewport={"width": 1280, "height": 900}) as c:
        page = c.page
        page.goto(f"{serve.url}/login")
        c.check_axe("login page")
        c.shot("01-login")
        c.login(None, token="bgt_000000000000_wrong")  # noqa: S106 -- a wrong token on purpose
        expect(page.get_by_role("alert")).to_contain_text("unknown, revoked or wrong")
        c.shot("02-login-refused")

        c.login("halter")
        expect(page.locator("#decision")).to_have_text("ACTIVE")
        expect(page.locator("#live")).to_have_text("(live)")
        expect(
            page.get_by_text("A halt made in good faith is always the right call")
        ).to_be_visible()
        c.check_axe("console, active")
        c.shot("03-active")

        _stop_with_the_keyboard(c)
        expect(page.locator("#result-live-title")).to_have_text("HALTED")
        expect(page.locator("#decision")).to_have_text("HALTED")
        expect(page.locator("#targets tr[data-target='local']")).to_contain_text(
            "halt acknowledged"
        )
        expect(page.locator("#suspension-body")).to_contain_text("token:halter-1")
        expect(page.locator("#suspension-body")).to_contain_text(
            "Model output unsafe in ticket 4711"
        )
        assert serve.wait_active(False, 2.0)
        assert LocalStore(serve.server.bridge.settings.local_file).read(FLAG) is False
        c.check_axe("console, halted")
        c.shot("06-halted")

        # 200 % zoom: the same page in half the CSS pixels.
        page.set_viewport_size({"width": 640, "height": 900})
        c.no_horizontal_scroll("200 % zoom")
        expect(page.get_by_role("button", name="STOP", exact=True)).to_be_visible()
        c.shot("07-halted-200pct")

    with console(browser, serve, axe, shots) as c:
        c.login("approver")
        expect(c.page.locator("#decision")).to_have_text("HALTED")
        c.page.get_by_label("Why it is safe to run again (required)").fill(
            "root cause fixed, checked"
        )
        c.page.get_by_role("button", name="Resume the system").click()
        expect(c.page.locator("#result-live-title")).to_have_text("Resumed")
        expect(c.page.locator("#decision")).to_have_text("ACTIVE")
        assert serve.wait_active(True, 3.0)
        expect(c.page.locator("#history")).to_contain_text("token:approver-1")
        c.check_axe("console, resumed")
        c.shot("08-resumed")


def test_a_viewer_sees_no_stop_button_and_is_refused(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    with console(browser, serve, axe, shots) as c:
        c.login("viewer")
        expect(c.page.locator("#cannot-halt")).to_contain_text("cannot halt")
        expect(c.page.get_by_role("button", name="STOP", exact=True)).to_have_count(0)
        status = c.page.evaluate(
            """async () => {
                const csrf = document.querySelector('meta[name="csrf-token"]').content;
                const r = await fetch('/v1/halt', {method: 'POST', credentials: 'same-origin',
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                    body: JSON.stringify({reason: 'viewer tries'})});
                return [r.status, (await r.json()).type];
            }"""
        )
        assert status == [403, "/problems/forbidden"]
        assert serve.server.bridge.engine.active
        c.check_axe("console, viewer")
        c.shot("01-viewer")


def _report(serve: Running, pid: int, source_ids: list[str | None]) -> None:
    body = {
        "host": "gpu-7",
        "pid": pid,
        "instance": "a1",
        "service": "inference",
        "role": "bridge",
        "provider": "local",
        "flag": FLAG,
        "active": True,
        "cause": "active",
        "sent_at": "2026-01-01T00:00:00.000Z",
        "seq": 1,
        "interval": 60.0,
        "source_ids": source_ids,
    }
    with serve.client("reporter") as c:
        assert c.post("/v1/reports", json=body).status_code == 202


def test_readers_of_another_source_are_an_alarm_on_the_console(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    _report(serve, 1, serve.server.bridge.source_ids)
    with console(browser, serve, axe, shots) as c:
        c.login("viewer")
        alarm = c.page.locator("#fleet-sources")
        expect(alarm).to_be_hidden()
        expect(c.page.locator("#fleet-line")).to_have_text("active on 1 of 1 readers")
        # Reported after the page loaded: the alarm and the line follow without a reload.
        _report(serve, 2, ["local:gpu-7:/srv/old/local.db"])
        alarm = c.page.get_by_role("alert").filter(has_text="another source")
        expect(alarm).to_be_visible()
        expect(alarm).to_contain_text("1 reader reads another source: it will NOT stop")
        expect(alarm).to_contain_text("will NOT stop when this serve halts")
        expect(alarm).to_contain_text("gpu-7/2/a1")
        expect(alarm).not_to_contain_text("gpu-7/1/a1")
        expect(c.page.locator("#fleet-line")).to_have_text(
            "active on 2 of 2 readers; 1 reads another source"
        )
        _report(serve, 3, ["local:gpu-7:/srv/old/local.db"])
        expect(alarm).to_contain_text("2 readers read another source: they will NOT stop")
        c.check_axe("console, readers of another source")
        c.shot("01-another-source")


def _reads_unknown(page: Page) -> None:
    """Fail closed: the state a logged-out page no longer receives reads as unknown, never the last ACTIVE."""
    expect(page.locator("#decision")).to_have_text("UNKNOWN")
    expect(page.locator("#cause")).to_have_text(
        re.compile(r"^Logged out: this page no longer receives the state")
    )
    expect(page.locator("#state")).to_have_class(re.compile(r"\bis-unknown\b"))
    expect(page.locator("#state")).not_to_have_class(re.compile(r"\bis-active\b"))
    # Neither the running green nor the halted red: plain text in a dashed grey frame.
    expect(page.locator("#decision")).to_have_css("color", "rgb(17, 17, 17)")
    expect(page.locator("#state")).to_have_css("border-top-style", "dashed")
    expect(page.locator("#age")).to_have_text("none since the session ended")
    expect(page.locator("#fleet-line")).to_have_text(
        re.compile(r"^Unknown: logged out, this page no longer receives")
    )
    local = page.locator("#targets tr[data-target='local']")
    expect(local.locator("td[data-label='Reads']")).to_have_text("unknown")
    expect(local.locator("td[data-label='Last change']")).to_have_text("unknown")
    expect(page).to_have_title("UNKNOWN · breakglass console")
    # Nobody is named as signed in; the logout form now leads to the login.
    header = page.locator("header")
    expect(header).to_contain_text("Not signed in: this console session has ended.")
    expect(header).not_to_contain_text("Signed in as")
    expect(page.locator("#who")).to_have_count(0)
    expect(header.get_by_role("button", name="Log in again")).to_be_enabled()
    # Whether readers read another source: neither the last alarm nor the last all-clear.
    sources = page.locator("#fleet-sources")
    expect(sources).to_be_visible()
    expect(sources).to_have_text(re.compile(r"^Readers of another source: unknown\. Log in again"))
    expect(sources).to_have_attribute("role", "status")
    expect(sources).not_to_have_class(re.compile(r"\berror\b"))
    # Every panel drawn from what the page last knew says it no longer knows, and shows nothing else.
    for panel in ("suspension", "resume", "held", "drills", "history-panel"):
        expect(page.locator(f"#{panel} > :not(h2)")).to_have_text(
            re.compile(r"^Unknown: logged out\. Log in again to see ")
        )
    expect(page.locator("#held-title")).to_have_text("Held decisions")
    for stale in ("None open.", "nothing to resume", "No decisions held", "No drill on record"):
        expect(page.locator("main")).not_to_contain_text(stale)
    expect(page.locator("#history")).to_have_count(0)
    # Nowhere "active" but in the flag's name (system-active).
    claims = re.compile(r"(?<!-)\bactive\b", re.IGNORECASE)
    expect(page.locator("body")).not_to_contain_text(claims)


def test_an_ended_session_says_so_and_disables_the_open_console(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    with console(browser, serve, axe, shots) as c:
        page = c.page
        c.login("approver")
        stop = page.get_by_role("button", name="STOP", exact=True)
        resume = page.locator("#resume-submit")
        # Drawn by the stylesheet (expect waits for it): the colour the disabled STOP must lose.
        expect(stop).to_have_css("background-color", "rgb(176, 0, 32)")
        expect(stop).to_be_enabled()
        expect(resume).to_be_enabled()
        expect(page.locator("#decision")).to_have_text("ACTIVE")
        expect(
            page.locator("#targets tr[data-target='local'] td[data-label='Reads']")
        ).to_have_text("on")
        c.end_sessions_of("approver-1")
        # The page's next poll (every 2 s) learns it; the operator is told how to halt now.
        result = page.locator("#result-live")
        expect(result).to_contain_text("LOGGED OUT", timeout=10_000)
        expect(result).to_contain_text("an admin ended this console session")
        expect(result).to_contain_text("Until you do, an API token halts.")
        _reads_unknown(page)
        # Nothing on the page that the server would refuse stays pressable, and STOP says why;
        # the resume form went with the panel that no longer knows whether there is anything to resume.
        expect(stop).to_be_disabled()
        expect(stop).to_have_accessible_description(re.compile(r"^Logged out: this page"))
        expect(resume).to_have_count(0)
        expect(
            page.locator("main :is(button, input:not([type=hidden]), textarea, select):enabled")
        ).to_have_count(0)
        expect(page.locator("#session-ended")).to_be_visible()
        expect(stop).to_have_css("cursor", "not-allowed")
        expect(stop).not_to_have_css("background-color", "rgb(176, 0, 32)")
        stop.click(force=True)
        expect(page.get_by_role("dialog")).to_have_count(0)
        assert serve.server.bridge.engine.active
        c.check_axe("console, session ended")
        c.shot("01-session-ended")


def test_an_ended_page_stops_asking(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    """Each question a page with an ended session asks is a failed login (audited, and counted towards
    its address's limit): once the page knows, it asks nothing more."""
    with console(browser, serve, axe, shots) as c:
        page = c.page
        page.clock.install()
        asked: list[str] = []

        def ask(route: Route) -> None:
            asked.append(route.request.url)
            route.continue_()

        page.route("**/v1/status*", ask)
        page.route("**/v1/suspensions*", ask)
        c.login("viewer")
        expect(page.locator("#decision")).to_have_text("ACTIVE")
        c.end_sessions_of("viewer-1")
        expect(page.locator("#decision")).to_have_text("UNKNOWN", timeout=10_000)
        before = len(asked)
        page.clock.run_for(20_000)  # ten polls' time
        # Asked after any poll those 20 s fired: once it has been seen, any such poll has been too.
        assert page.evaluate("async () => (await fetch('/v1/status?last')).status") == 401
        assert asked[before:] == [f"{serve.url}/v1/status?last"]


def test_an_ended_session_forgets_the_halt_and_the_alarm_it_showed(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    _report(serve, 2, ["local:gpu-7:/srv/old/local.db"])
    with serve.client("halter") as h:
        assert h.post("/v1/halt", json={"reason": "drift seen on gpu-7"}).status_code == 200
    with console(browser, serve, axe, shots) as c:
        page = c.page
        c.login("approver")
        expect(page.locator("#decision")).to_have_text("HALTED")
        expect(page.locator("#who")).to_have_text("approver-1")
        expect(page.locator("#suspension")).to_contain_text("drift seen on gpu-7")
        expect(page.locator("#history")).to_contain_text("still halted")
        expect(page.locator("#resume-submit")).to_be_enabled()
        alarm = page.get_by_role("alert").filter(has_text="another source")
        expect(alarm).to_contain_text("1 reader reads another source: it will NOT stop")
        c.end_sessions_of("approver-1")
        expect(page.locator("#result-live")).to_contain_text("LOGGED OUT", timeout=10_000)
        _reads_unknown(page)
        main = page.locator("main")
        for stale in (
            "HALTED",
            "drift seen on gpu-7",
            "token:halter-1",
            "still halted",
            "reads another",
        ):
            expect(main).not_to_contain_text(stale)
        expect(page.get_by_role("alert").filter(has_text="another source")).to_have_count(0)
        expect(page.locator("body")).not_to_contain_text("approver-1")
        expect(
            page.locator("main :is(button, input:not([type=hidden]), textarea, select):enabled")
        ).to_have_count(0)
        assert serve.server.bridge.engine.active is False
        c.check_axe("console, session ended while halted")
        c.shot("01-ended-while-halted")


def test_a_halt_refused_as_logged_out_disables_the_console(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    with console(browser, serve, axe, shots) as c:
        c.login("halter")
        page = c.page
        # No poll answers, so the refused halt is how the page learns its session ended.
        page.route("**/v1/status", lambda route: None)
        page.get_by_role("button", name="STOP", exact=True).click()
        page.get_by_label("Reason (required)").fill("Model output unsafe")
        c.end_sessions_of("halter-1")
        page.get_by_role("button", name="Confirm STOP").click()
        result = page.locator("#result-live")
        expect(result).to_contain_text("NOT HALTED")
        expect(result).to_contain_text("Until you do, an API token halts.")
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(page.get_by_role("button", name="STOP", exact=True)).to_be_disabled()
        expect(page.locator("#stop-confirm")).to_be_disabled()
        _reads_unknown(page)
        assert serve.server.bridge.engine.active


REPLACED = (
    "This tab's session was replaced (signed in again in another tab, possibly as another person): "
    "reload to act"
)


def _enabled_controls(page: Page) -> Any:
    return page.locator("main :is(button, input:not([type=hidden]), textarea, select):enabled")


def _polls_answered(page: Page, count: int) -> None:
    """Wait for ``count`` of the page's polls of the state, each answered."""
    for _ in range(count):
        with page.expect_response(lambda r: r.url.endswith("/v1/status")) as answered:
            pass
        assert answered.value.ok


def _halt(page: Page, serve: Running, reason: str) -> None:
    """STOP from the page, seen acknowledged there and on the engine."""
    page.get_by_role("button", name="STOP", exact=True).click()
    page.get_by_label("Reason (required)").fill(reason)
    page.get_by_role("button", name="Confirm STOP").click()
    expect(page.locator("#result-live-title")).to_have_text("HALTED")
    assert serve.wait_active(False, 3.0)


def _replaced_tab_cannot_act(page: Page, serve: Running) -> None:
    """A tab whose session another login replaced reads unknown, names nobody, and cannot halt."""
    stop = page.get_by_role("button", name="STOP", exact=True)
    expect(page.locator("#decision")).to_have_text("UNKNOWN")
    expect(page.locator("#state")).to_have_class(re.compile(r"\bis-unknown\b"))
    expect(page.locator("#cause")).to_have_text(re.compile(r"^Session replaced: this tab"))
    expect(page).to_have_title("UNKNOWN · breakglass console")
    header = page.locator("header")
    expect(header).not_to_contain_text("Signed in as")
    expect(page.locator("#who")).to_have_count(0)
    # Neither the old name as if still signed in, nor the new one it never showed.
    expect(page.locator("body")).not_to_contain_text("approver-1")
    expect(stop).to_be_disabled()
    expect(stop).to_have_accessible_description(re.compile(r"^Session replaced: this tab"))
    expect(_enabled_controls(page)).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text(re.compile(r"(?<!-)\bactive\b", re.IGNORECASE))
    stop.click(force=True)
    expect(page.get_by_role("dialog")).to_have_count(0)
    # Whatever the page's script is made to send, the server refuses its token for the approver's session.
    refused = page.evaluate(
        """async () => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch('/v1/halt', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                body: JSON.stringify({reason: 'tab A tries as the approver'})});
            return r.status;
        }"""
    )
    assert refused == 403
    assert serve.server.bridge.engine.active


def test_a_tab_whose_session_another_login_replaced_says_so_and_cannot_act(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    """Tab A signed in as the halter; tab B, in the same browser, signs in as the approver. The cookie is
    now the approver's: tab A must not look usable, name nobody, and never act as the approver."""
    with console(browser, serve, axe, shots) as a:
        page = a.page
        a.login("halter")
        expect(page.locator("#who")).to_have_text("halter-1")
        expect(page.locator("#decision")).to_have_text("ACTIVE")
        stop = page.get_by_role("button", name="STOP", exact=True)
        expect(stop).to_be_enabled()
        tab_b = a.context.new_page()
        tab_b.goto(f"{serve.url}/login")
        tab_b.get_by_label("API token").fill(serve.tokens["approver"])
        with tab_b.expect_navigation(wait_until="load"):
            tab_b.get_by_role("button", name="Log in").click()
        expect(tab_b.locator("#who")).to_have_text("approver-1")
        # Tab A's next poll (every 2 s) learns it, before anyone presses STOP.
        result = page.locator("#result-live")
        expect(result).to_contain_text(REPLACED, timeout=10_000)
        expect(result).to_have_attribute("role", "alert")
        _replaced_tab_cannot_act(page, serve)
        a.check_axe("console, session replaced")
        a.shot("01-session-replaced")
        # "Log out" in tab A would end the approver's session: it reloads instead.
        with page.expect_navigation(wait_until="load"):
            page.locator("header").get_by_role("button", name="Reload").click()
        expect(page.locator("#who")).to_have_text("approver-1")
        # Tab B, whose session the cookie is, keeps working through its polls.
        _polls_answered(tab_b, 1)
        expect(tab_b.locator("#who")).to_have_text("approver-1")
        expect(tab_b.locator("#result-live")).to_be_hidden()
        # After the reload tab A shows, and acts as, the person it now says.
        expect(page.locator("#result-live")).to_be_hidden()
        _halt(page, serve, "reloaded, halting as approver")
        expect(page.locator("#suspension-body")).to_contain_text("token:approver-1")
        tab_b.close()


def test_a_single_tab_keeps_its_session_across_polls_and_halts(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    with console(browser, serve, axe, shots) as c:
        page = c.page
        c.login("halter")
        # Several polls answered, each naming this page's own session.
        _polls_answered(page, 3)
        expect(page.locator("#result-live")).to_be_hidden()
        expect(page.locator("#who")).to_have_text("halter-1")
        expect(page.locator("#decision")).to_have_text("ACTIVE")
        _halt(page, serve, "single tab halt")
        expect(page.locator("#decision")).to_have_text("HALTED")


def test_on_a_phone_and_when_nothing_acknowledges(
    browser: Browser, serve: Running, axe: str, shots: Path
) -> None:
    phone = {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    }
    with console(browser, serve, axe, shots, **phone) as c:
        c.login("halter")
        expect(c.page.locator("#decision")).to_have_text("ACTIVE")
        c.no_horizontal_scroll("phone")
        stop = c.page.get_by_role("button", name="STOP", exact=True)
        box = stop.bounding_box()
        assert box is not None
        assert box["height"] >= 44
        assert box["width"] >= 300
        c.check_axe("console on a phone")
        c.shot("01-phone-active")

        local = serve.server.bridge.settings.local_file
        local.unlink()
        local.mkdir()  # the only target cannot be written: the halt must say NOT HALTED
        stop.tap()
        c.page.get_by_label("Reason (required)").fill("phone halt")
        c.page.get_by_role("button", name="Confirm STOP").tap()
        expect(c.page.locator("#result-live-title")).to_have_text("NOT HALTED")
        expect(c.page.locator("#result-live-text")).to_contain_text("kill switch")
        expect(c.page.get_by_role("alert")).to_contain_text("NOT HALTED")
        c.no_horizontal_scroll("phone, not halted")
        c.check_axe("console on a phone, not halted")
        c.shot("02-phone-not-halted")


def test_single_sign_on_in_the_browser(
    browser: Browser, tmp_path: Path, axe: str, shots: Path
) -> None:
    from breakglass.serve.settings import OidcSettings, ServeSettings
    from tests.test_serve_oidc import AUDIENCE, IdentityProvider

    idp = IdentityProvider()
    idp.user = {"sub": "user-1", "email": "dana@example.com", "groups": ["sre"]}
    oidc = OidcSettings(
        issuer=idp.issuer, audience=AUDIENCE, role_claim="groups", role_map={"sre": "halter"}
    )
    try:
        with (
            running_serve(
                tmp_path, serve=ServeSettings(path=tmp_path / "serve.db", oidc=oidc)
            ) as serve,
            console(browser, serve, axe, shots) as c,
        ):
            c.page.goto(f"{serve.url}/login")
            c.check_axe("login page with single sign-on")
            c.shot("01-login-sso")
            c.page.get_by_role("link", name="Sign in with single sign-on").click()
            expect(c.page.locator("#who")).to_have_text("dana@example.com")
            expect(c.page.locator("#role")).to_have_text("halter")
            expect(c.page.get_by_role("button", name="STOP", exact=True)).to_be_visible()
            c.shot("02-signed-in-sso")
    finally:
        idp.close()
