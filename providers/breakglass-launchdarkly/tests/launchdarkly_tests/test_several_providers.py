"""Two providers at once: LaunchDarkly (the real SDK against the protocol server) and the local store.

Stop wins across them, and a halt goes to both in parallel: one that
acknowledges is a halt even when the other fails; a resume needs both.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.bridge import Bridge
from breakglass.errors import AdminError, ConfigurationError
from breakglass.settings import LocalSettings, Settings, load_settings
from breakglass.testing.conformance import wait_for
from launchdarkly_tests.fake_ld import FakeLaunchDarkly

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = [
    pytest.mark.live,
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

FLAG = "system-active"


@pytest.fixture
def both(fake: FakeLaunchDarkly, tmp_path: Path, ld_env: Callable[..., None]) -> Iterator[Bridge]:
    """A started bridge on LaunchDarkly and the local store, both on."""
    ld_env(fake)
    settings = Settings(
        providers=["launchdarkly", "local"], flag_key=FLAG, state_dir=tmp_path, max_staleness=5
    )
    bridge = Bridge.from_settings(settings).start()
    bridge.targets()[1].admin.set_active(True, actor="setup", reason="start")  # type: ignore[union-attr]
    yield bridge
    bridge.close()


def test_providers_setting_accepts_a_list_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(providers=["LaunchDarkly", " local"]).provider_names == [
        "launchdarkly",
        "local",
    ]
    monkeypatch.setenv("BREAKGLASS_PROVIDERS", "launchdarkly, local")
    assert load_settings().provider_names == ["launchdarkly", "local"]
    monkeypatch.setenv("BREAKGLASS_PROVIDERS", "local,local")
    with pytest.raises(ConfigurationError, match=r"BREAKGLASS_PROVIDERS: .*named twice"):
        load_settings()
    monkeypatch.delenv("BREAKGLASS_PROVIDERS")
    assert load_settings(provider="local").provider_names == ["local"]


def test_stop_wins_across_both(both: Bridge, fake: FakeLaunchDarkly) -> None:
    assert wait_for(lambda: both.engine.active, 5.0) is not None
    assert both.name == "launchdarkly+local"
    fake.set_on(FLAG, on=False)  # someone halts in the LaunchDarkly dashboard only
    assert wait_for(lambda: not both.engine.active, 2.0) is not None
    assert both.engine.state.source == "launchdarkly"
    fake.set_on(FLAG, on=True)
    assert wait_for(lambda: both.engine.active, 2.0) is not None


def test_a_silent_vendor_halts_although_the_other_says_true(
    both: Bridge, fake: FakeLaunchDarkly
) -> None:
    """Every mechanism must say true: LaunchDarkly frozen while local reads on is halted, as stale."""
    assert wait_for(lambda: both.engine.active, 5.0) is not None
    fake.stall()  # LaunchDarkly's stop could have been pressed; nobody can tell
    assert wait_for(lambda: not both.engine.active, 15.0) is not None
    state = both.engine.state
    assert (state.cause.value, state.source) == ("stale", "launchdarkly")
    assert both.targets()[1].admin.get_active() is True  # type: ignore[union-attr]
    fake.restore()
    assert wait_for(lambda: both.engine.active, 15.0) is not None


def test_halt_goes_to_both_and_holds_when_one_fails(both: Bridge, fake: FakeLaunchDarkly) -> None:
    assert wait_for(lambda: both.engine.active, 5.0) is not None
    fake.fail_next(500, count=20)  # LaunchDarkly's API is down for the whole retry budget
    ack = both.halt(actor="oncall@example.com", reason="two vendors, one down")
    assert ack.active is False
    assert wait_for(lambda: not both.engine.active, 2.0) is not None
    assert both.engine.state.source == "local"
    assert fake.flag_on(FLAG) is True  # LaunchDarkly did not change: reported, not hidden
    # LaunchDarkly is back: halting again reaches both.
    fake.restore()
    results = both.change(active=False, actor="oncall@example.com", reason="again")
    assert {r.target: r.ok for r in results} == {"launchdarkly": True, "local": True}
    assert fake.flag_on(FLAG) is False
    both.resume(actor="approver@example.com", reason="fixed")
    assert wait_for(lambda: both.engine.active, 3.0) is not None


def test_resume_refused_unless_every_provider_acknowledged(
    both: Bridge, fake: FakeLaunchDarkly
) -> None:
    both.halt(actor="oncall@example.com", reason="incident")
    fake.fail_next(403, count=5)
    with pytest.raises(AdminError, match=r"not resumed everywhere: launchdarkly: AdminAuthError"):
        both.resume(actor="approver@example.com", reason="too early")
    assert wait_for(lambda: not both.engine.active, 1.0) is not None


def test_halt_fails_loudly_when_no_provider_acknowledges(
    fake: FakeLaunchDarkly, tmp_path: Path, ld_env: Callable[..., None]
) -> None:
    ld_env(fake)
    # The local store's directory is a file: every write to it fails.
    (tmp_path / "blocked").write_text("not a directory")
    settings = Settings(
        providers=["launchdarkly", "local"],
        flag_key=FLAG,
        state_dir=tmp_path,
        local=LocalSettings(path=tmp_path / "blocked" / "local.db"),
    )
    with Bridge.from_settings(settings) as bridge:
        fake.fail_next(401, count=5)
        with pytest.raises(AdminError, match="NOT HALTED: no provider acknowledged"):
            bridge.halt(actor="oncall@example.com", reason="nothing answers")
    assert fake.flag_on(FLAG) is True


def test_cli_halts_both_and_names_each(
    fake: FakeLaunchDarkly, tmp_path: Path, ld_env: Callable[..., None]
) -> None:
    ld_env(fake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_") or "__" in k}
    env |= {"BREAKGLASS_PROVIDERS": "launchdarkly,local", "BREAKGLASS_STATE_DIR": str(tmp_path)}
    script = Path(sys.executable).with_name("breakglass")
    run = [str(script), "halt", "--actor", "cli@example.com", "--reason", "both", "--json"]
    done = subprocess.run(
        run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["done"] is True
    assert {t["target"]: t["ok"] for t in info["targets"]} == {"launchdarkly": True, "local": True}
    assert fake.flag_on(FLAG) is False
    assert fake.api_token not in done.stdout + done.stderr


def test_serve_halts_both_at_once_and_reports_each(
    fake: FakeLaunchDarkly, tmp_path: Path, ld_env: Callable[..., None]
) -> None:
    from breakglass.testing.serve import local_settings, running_serve

    ld_env(fake)
    settings = local_settings(tmp_path, provider="local", providers=["launchdarkly", "local"])
    with running_serve(tmp_path, settings=settings) as serve:
        assert serve.wait_active(True)
        with serve.client("halter") as c:
            response = c.post("/v1/halt", json={"reason": "two vendors"})
            assert response.status_code == 200, response.text
            assert serve.wait_active(False, 2.0)
            deadline = time.monotonic() + 10
            targets: dict[str, Any] = {}
            while time.monotonic() < deadline:
                targets = {t["name"]: t["last"] for t in c.get("/v1/status").json()["targets"]}
                if all(targets.values()):
                    break
                time.sleep(0.05)
        assert {name: last["ok"] for name, last in targets.items()} == {
            "launchdarkly": True,
            "local": True,
        }
        assert fake.flag_on(FLAG) is False
        # LaunchDarkly refuses the resume: stop wins, the system stays halted, and says so.
        fake.fail_next(403, count=5)
        with serve.client("approver") as c:
            refused = c.post("/v1/resume", json={"reason": "too early"})
        assert refused.status_code == 502
        body = refused.json()
        assert body["type"] == "/problems/not-resumed"
        assert {t["target"]: t["ok"] for t in body["targets"]} == {
            "launchdarkly": False,
            "local": True,
        }
        assert not serve.server.bridge.engine.active


def test_a_frozen_vendor_api_does_not_delay_the_halt(
    fake: FakeLaunchDarkly, tmp_path: Path, ld_env: Callable[..., None]
) -> None:
    """LaunchDarkly's REST API accepts connections and never answers; the halt answers on local's ack.

    LaunchDarkly's own timeouts are long here (it gives up after its 15 s retry budget), so the
    answer naming it pending is what shows the halt did not wait for it, however slow the host.
    """
    from breakglass.testing.serve import local_settings, running_serve

    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(16)  # accepted by the kernel, never read: a frozen vendor
    try:
        ld_env(
            fake,
            API_BASE_URL=f"http://127.0.0.1:{frozen.getsockname()[1]}",
            CONNECT_TIMEOUT="5",
            REQUEST_TIMEOUT="60",
        )
        settings = local_settings(tmp_path, providers=["launchdarkly", "local"])
        with running_serve(tmp_path, settings=settings) as serve:
            assert serve.wait_active(True)
            with serve.client("halter") as c:
                response = c.post("/v1/halt", json={"reason": "vendor frozen"})
                assert response.status_code == 200, response.text
                body = response.json()
                assert {t["target"]: t["ok"] for t in body["targets"]} == {"local": True}
                assert body["pending"] == ["launchdarkly"]
                assert serve.wait_active(False, 10.0)
                # The vendor now refuses: its held requests are reset, and its failure (never a
                # halt) follows on the status.
                frozen.close()
                deadline = time.monotonic() + 30
                last: dict[str, Any] | None = None
                while time.monotonic() < deadline:
                    targets = {t["name"]: t["last"] for t in c.get("/v1/status").json()["targets"]}
                    last = targets["launchdarkly"]
                    if last is not None:
                        break
                    time.sleep(0.1)
            assert last is not None
            assert last["ok"] is False
            assert "AdminUnavailableError" in last["error"]
    finally:
        frozen.close()


def test_a_slow_local_store_is_waited_for_after_the_vendor_failed(
    fake: FakeLaunchDarkly, tmp_path: Path, ld_env: Callable[..., None]
) -> None:
    """LaunchDarkly frozen (0.5 s timeouts), the local store locked: the halt waits for local.

    Its wait is serve's ``halt_timeout``, nothing of the vendor's: LaunchDarkly's failure, which
    comes only after its own request timeouts ran out, does not end it, and once the lock goes
    the halt stands on local's acknowledgement.
    """
    from breakglass.serve.settings import ServeSettings
    from breakglass.testing.serve import local_settings, running_serve

    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(16)
    lock = sqlite3.connect(tmp_path / "local.db", isolation_level=None)
    try:
        ld_env(fake, API_BASE_URL=f"http://127.0.0.1:{frozen.getsockname()[1]}")
        settings = local_settings(tmp_path, providers=["launchdarkly", "local"])
        serve_settings = ServeSettings(path=tmp_path / "serve.db", halt_timeout=20)
        with (
            running_serve(tmp_path, settings=settings, serve=serve_settings) as serve,
            serve.client("halter") as halter,
            serve.client("viewer") as viewer,
            ThreadPoolExecutor(1) as pool,
        ):
            assert serve.wait_active(True)
            lock.execute("BEGIN EXCLUSIVE")  # the local admin's write waits out a busy lock
            answer = pool.submit(halter.post, "/v1/halt", json={"reason": "slow local"})
            deadline = time.monotonic() + 15
            last: dict[str, Any] | None = None
            while last is None and time.monotonic() < deadline:
                targets = {t["name"]: t["last"] for t in viewer.get("/v1/status").json()["targets"]}
                last = targets["launchdarkly"]
                time.sleep(0.05)
            assert last is not None
            assert last["ok"] is False
            assert not answer.done(), answer.result().text  # LaunchDarkly's failure ended nothing
            lock.execute("ROLLBACK")
            response = answer.result(timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            assert {t["target"]: t["ok"] for t in body["targets"]} == {
                "launchdarkly": False,
                "local": True,
            }
            assert body["pending"] == []
            assert serve.wait_active(False, 10.0)
    finally:
        lock.close()
        frozen.close()


class SlowLink:
    """A TCP relay to the LaunchDarkly server that holds each new connection for ``delay`` seconds."""

    def __init__(self, port: int, delay: float) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._target = port
        self._delay = delay
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        # Both sockets are closed here, once both directions ended: a socket only shut down is
        # a ResourceWarning when collected, which fails whichever test is running then.
        with client:
            time.sleep(self._delay)
            with socket.create_connection(("127.0.0.1", self._target)) as upstream:
                pipes = [
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                    for a, b in ((client, upstream), (upstream, client))
                ]
                for pipe in pipes:
                    pipe.start()
                for pipe in pipes:
                    pipe.join()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_a_halt_acknowledged_after_the_answer_is_announced(
    fake: FakeLaunchDarkly, tmp_path: Path, ld_env: Callable[..., None]
) -> None:
    """LaunchDarkly's API answers after a second; serve said NOT HALTED at 0.3 s, then announces the halt."""
    from breakglass.serve.settings import ServeSettings
    from breakglass.testing.serve import local_settings, running_serve

    class Heard:
        def __init__(self) -> None:
            self.kinds: list[str] = []

        def on_event(self, event: Any) -> None:
            self.kinds.append(event.kind)

    heard = Heard()
    link = SlowLink(int(fake.url.rsplit(":", 1)[1]), delay=1.0)
    ld_env(fake, API_BASE_URL=f"http://127.0.0.1:{link.port}", REQUEST_TIMEOUT="5")
    settings = local_settings(tmp_path, providers=["launchdarkly"])
    serve_settings = ServeSettings(path=tmp_path / "serve.db", halt_timeout=0.3)
    try:
        with running_serve(
            tmp_path, settings=settings, serve=serve_settings, listeners=[heard]
        ) as serve:
            assert serve.wait_active(True)
            with serve.client("halter") as c:
                answer = c.post("/v1/halt", json={"reason": "slow vendor"})
                assert answer.status_code == 503, answer.text
                assert answer.json()["type"] == "/problems/not-halted"
                assert answer.json()["pending"] == ["launchdarkly"]
                assert serve.wait_active(False, 15.0), "the late acknowledgement did not halt"
                deadline = time.monotonic() + 15
                while "halt-complete" not in heard.kinds and time.monotonic() < deadline:
                    time.sleep(0.05)
                suspension = c.get("/v1/status").json()["suspension"]
    finally:
        link.close()
    assert heard.kinds == ["halt-failed", "halt", "halt-complete"]
    assert fake.flag_on(FLAG) is False
    assert suspension is not None
    assert suspension["targets"]["launchdarkly"]["ok"] is True
