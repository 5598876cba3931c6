"""Two ``breakglass serve`` processes on one PostgreSQL database: tokens, idempotency keys and
suspensions are shared; SIGTERM stops a replica quickly, even with an event stream open."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from breakglass.local.store import LocalStore
from breakglass.testing.serve import console_login, halt_once_answered

if TYPE_CHECKING:
    pass

pytest_plugins = ["tests.audit_fixtures"]
pytestmark = pytest.mark.live

FLAG = "system-active"
SCRIPT = Path(sys.executable).with_name("breakglass")
# uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (systemd counts that as clean).
CLEAN_EXIT = (0, -signal.SIGTERM)


class Replica:
    """One ``breakglass serve`` process, on a port it binds itself (port 0) and names on stdout."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        # Port 0: a port picked free here could be taken by another process before serve binds it
        # (then this test would talk to whoever took it); serve's "serving" line names its own.
        self.env = {**env, "BREAKGLASS_SERVE__PORT": "0"}
        self.proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--json"],
            env=self.env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first: queue.Queue[str] = queue.Queue()
        self._stdout = threading.Thread(target=self._first_line, args=(first,), daemon=True)
        self._stdout.start()
        try:
            line = first.get(timeout=30)
        except queue.Empty:
            self.stop()
            raise RuntimeError(
                f"serve did not say it serves within 30 s: {''.join(self.stderr)[-1500:]}"
            ) from None
        serving = json.loads(line) if line.startswith("{") else {}
        if serving.get("event") != "serving":
            self.stop()
            raise RuntimeError(f"serve did not start: {line!r} {''.join(self.stderr)[-1500:]}")
        self.url = str(serving["url"]).rstrip("/")
        port = urlsplit(self.url).port
        assert port, serving
        self.port: int = port
        assert httpx.get(f"{self.url}/healthz", timeout=30).status_code == 200

    def _first_line(self, into: queue.Queue[str]) -> None:
        assert self.proc.stdout is not None
        into.put(self.proc.stdout.readline())
        self.proc.stdout.read()  # drain, so the process never blocks on a full pipe

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def admin_token(self) -> str | None:
        lines = [line.strip() for line in self.stderr if line.strip().startswith("bgt_")]
        return lines[0] if lines else None

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        self._stdout.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


@pytest.fixture
def shared(postgres_url: str, tmp_path: Path) -> dict[str, str]:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS serve_tokens, serve_idempotency, serve_suspensions, serve_meta, "
            "serve_login_failures, serve_session_revocations"
        )
    LocalStore(tmp_path / "local.db").write(FLAG, value=True, actor="setup", reason="start active")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env |= {
        "BREAKGLASS_PROVIDER": "local",
        "BREAKGLASS_LOCAL__PATH": str(tmp_path / "local.db"),
        "BREAKGLASS_SERVE__DATABASE_URL": postgres_url,
        "BREAKGLASS_SERVE__TOKEN_REFRESH": "0.2",
    }
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str) -> Any:
    done = subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


def test_two_replicas_share_tokens_keys_and_suspensions(
    shared: dict[str, str], tmp_path: Path
) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a = Replica({**shared, "BREAKGLASS_STATE_DIR": str(a_dir)}, a_dir)
    try:
        admin = a.admin_token()
        assert admin, "the first replica prints the first admin token"
        b = Replica({**shared, "BREAKGLASS_STATE_DIR": str(b_dir)}, b_dir)
        try:
            assert b.admin_token() is None, "the second replica must not make another admin token"
            halter = _cli(
                {**shared, "BREAKGLASS_STATE_DIR": str(a_dir)},
                tmp_path,
                "serve",
                "token",
                "create",
                "--name",
                "oncall",
                "--role",
                "halter",
                "--json",
            )["token"]
            with a.client(halter) as ca, b.client(halter) as cb:
                first = ca.post(
                    "/v1/halt", json={"reason": "replica A"}, headers={"Idempotency-Key": "p-1"}
                )
                assert first.status_code == 200, first.text
                replay = halt_once_answered(cb, {"reason": "replica A"}, "p-1")
                assert replay.status_code == 200
                assert replay.headers["idempotent-replayed"] == "true"
                assert replay.json()["id"] == first.json()["id"]
                # Both halt at once: one suspension, both halts in it.
                with ThreadPoolExecutor(2) as pool:
                    answers = list(
                        pool.map(
                            lambda c: c.post("/v1/halt", json={"reason": "race"}),
                            (ca, cb),
                        )
                    )
                assert [r.status_code for r in answers] == [200, 200]
                sa = ca.get("/v1/status").json()["suspension"]
                sb = cb.get("/v1/status").json()["suspension"]
                assert sa["id"] == sb["id"] == first.json()["suspension_id"]
                assert len(sb["halts"]) == 3
            with b.client(admin) as cb:
                resumed = cb.post("/v1/resume", json={"reason": "all clear"})
                assert resumed.status_code == 200, resumed.text
            with a.client(admin) as ca:
                latest = ca.get("/v1/suspensions").json()["suspensions"][0]
                assert latest["closed_by"] == "token:admin"
            _revoke_reaches_both(shared, tmp_path, halter, (a, b))
        finally:
            assert b.stop() in CLEAN_EXIT, "".join(b.stderr)[-1500:]
    finally:
        a.stop()


def _revoke_reaches_both(
    shared: dict[str, str], tmp_path: Path, token: str, replicas: tuple[Replica, Replica]
) -> None:
    """A revocation made through the shared store reaches every replica."""
    _cli(
        {**shared, "BREAKGLASS_STATE_DIR": str(tmp_path)},
        tmp_path,
        "serve",
        "token",
        "revoke",
        "oncall",
    )
    time.sleep(0.5)
    for replica in replicas:
        with replica.client(token) as c:
            assert c.get("/v1/status").status_code == 401


def test_failed_logins_are_counted_once_for_both_replicas(
    shared: dict[str, str], tmp_path: Path
) -> None:
    """An attacker spreading wrong tokens over the replicas gets the limit once, not per replica."""
    limits = {"BREAKGLASS_SERVE__LOGIN_FAILURES": "4", "BREAKGLASS_SERVE__LOGIN_WINDOW": "60"}
    a = Replica({**shared, **limits, "BREAKGLASS_STATE_DIR": str(tmp_path / "a")}, tmp_path)
    try:
        b = Replica({**shared, **limits, "BREAKGLASS_STATE_DIR": str(tmp_path / "b")}, tmp_path)
        try:
            admin = a.admin_token()
            assert admin
            wrong = {"Authorization": "Bearer bgt_guess_wrong"}
            codes = [
                httpx.get(f"{r.url}/v1/status", headers=wrong, timeout=30).status_code
                for r in (a, b, a, b)
            ]
            assert codes == [401] * 4
            for r in (a, b):
                limited = httpx.get(f"{r.url}/v1/status", headers=wrong, timeout=30)
                assert limited.status_code == 429, limited.text
                assert 1 <= int(limited.headers["retry-after"]) <= 60
            # The console's login form counts on the same books.
            with httpx.Client(base_url=b.url, timeout=30) as browser:
                form = browser.get("/login").text
                nonce = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                login = browser.post(
                    "/login", data={"token": "bgt_x_y", "csrf": nonce}, headers={"Origin": b.url}
                )
                assert login.status_code == 429
            # A valid token from the same address still works on either replica.
            for r in (a, b):
                with r.client(admin) as c:
                    assert c.post("/v1/halt", json={"reason": f"from {r.port}"}).status_code == 200
            # Another client is not limited by this one.
            other = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(base_url=b.url, transport=other, timeout=30) as c:
                assert c.get("/v1/status", headers=wrong).status_code == 401
        finally:
            b.stop()
    finally:
        a.stop()


def _the_command_line_ends_sessions(
    a: Replica, b: Replica, admin: str, env: dict[str, str], tmp_path: Path
) -> None:
    """``breakglass serve session revoke`` ends sessions the same way, through the shared store."""
    admin_on_a, _ = console_login(a.url, admin)
    with closing(admin_on_a):
        assert admin_on_a.get("/v1/status").status_code == 200
        out = _cli(env, tmp_path, "serve", "session", "revoke", "admin", "--json")
        assert out["person"] == "admin"
        assert out["generation"] == 1
        time.sleep(0.5)
        assert admin_on_a.get("/v1/status").status_code == 401
        with httpx.Client(base_url=b.url, cookies=dict(admin_on_a.cookies), timeout=30) as replay:
            assert replay.get("/v1/status").status_code == 401


def _logout_reaches_the_other(a: Replica, b: Replica, token: str) -> None:
    """Logging out on one replica ends a copy of the cookie on the other."""
    browser, _ = console_login(a.url, token)
    with (
        closing(browser),
        httpx.Client(base_url=b.url, cookies=dict(browser.cookies), timeout=30) as copy,
    ):
        assert copy.get("/v1/status").status_code == 200
        assert browser.post("/logout", headers={"Origin": a.url}).status_code == 303
        time.sleep(0.5)
        assert copy.get("/v1/status").status_code == 401


def test_a_session_ended_on_one_replica_is_refused_on_the_other(
    shared: dict[str, str], tmp_path: Path
) -> None:
    a = Replica({**shared, "BREAKGLASS_STATE_DIR": str(tmp_path / "a")}, tmp_path)
    try:
        b = Replica({**shared, "BREAKGLASS_STATE_DIR": str(tmp_path / "b")}, tmp_path)
        try:
            admin = a.admin_token()
            assert admin
            env = {**shared, "BREAKGLASS_STATE_DIR": str(tmp_path / "a")}
            oncall = _cli(
                env, tmp_path, "serve", "token", "create", "--name", "oncall", "--role",
                "approver", "--json",
            )["token"]  # fmt: skip
            on_b, _ = console_login(b.url, oncall)
            cookie = dict(on_b.cookies)
            with closing(on_b), httpx.Client(base_url=a.url, cookies=cookie, timeout=30) as on_a:
                assert on_b.get("/v1/status").status_code == 200
                assert on_a.get("/v1/status").status_code == 200, "one key for every replica"
                with a.client(admin) as ca:
                    ended = ca.post("/v1/sessions/revocations", json={"person": "oncall"})
                    assert ended.status_code == 200, ended.text
                time.sleep(0.5)  # token_refresh is 0.2 s here
                for browser in (on_b, on_a):
                    assert browser.get("/v1/status").status_code == 401
                    resumed = browser.post(
                        "/v1/resume",
                        json={"reason": "x"},
                        headers={"Origin": str(browser.base_url)},
                    )
                    assert resumed.status_code == 401
            # The person's API token is not a session: it still halts, on either replica.
            with b.client(oncall) as cb:
                assert cb.post("/v1/halt", json={"reason": "still may"}).status_code == 200
            _the_command_line_ends_sessions(a, b, admin, env, tmp_path)
            _logout_reaches_the_other(a, b, oncall)
            listed = _cli(env, tmp_path, "serve", "session", "revocations", "--json")
            assert sorted(r["person"] for r in listed) == ["admin", "oncall"]
        finally:
            b.stop()
    finally:
        a.stop()


def test_sigterm_with_an_event_stream_open_stops_quickly(
    shared: dict[str, str], tmp_path: Path
) -> None:
    replica = Replica({**shared, "BREAKGLASS_STATE_DIR": str(tmp_path / "s")}, tmp_path)
    try:
        token = replica.admin_token()
        assert token
        opened = threading.Event()

        def listen() -> None:
            with httpx.stream(
                "GET",
                f"{replica.url}/v1/events",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ) as response:
                opened.set()
                for _ in response.iter_lines():
                    pass

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert opened.wait(10)
        started = time.monotonic()
        code = replica.stop()
        took = time.monotonic() - started
        assert code in CLEAN_EXIT, "".join(replica.stderr)[-1500:]
        assert took < 10, f"SIGTERM took {took:.1f} s"
        listener.join(5)
        assert not listener.is_alive()
        assert "Traceback" not in "".join(replica.stderr)
    finally:
        replica.stop()


def test_a_revoked_persons_bearer_jwt_is_refused_on_every_replica_and_after_a_restart(
    shared: dict[str, str], tmp_path: Path
) -> None:
    """Revoked on the command line: the person's earlier JWT is refused by both running replicas
    (each re-reads the list) and by one started afterwards (it reads the store at once)."""
    from tests.test_serve_oidc import AUDIENCE, IdentityProvider

    idp = IdentityProvider()
    oidc = {
        "BREAKGLASS_SERVE__OIDC__ISSUER": idp.issuer,
        "BREAKGLASS_SERVE__OIDC__AUDIENCE": AUDIENCE,
        "BREAKGLASS_SERVE__OIDC__ROLE_CLAIM": "groups",
        "BREAKGLASS_SERVE__OIDC__ROLE_MAP": json.dumps({"governance": "approver"}),
    }
    replicas: list[Replica] = []

    def start(name: str) -> Replica:
        replicas.append(
            Replica({**shared, **oidc, "BREAKGLASS_STATE_DIR": str(tmp_path / name)}, tmp_path)
        )
        return replicas[-1]

    def refused(replica: Replica, token: str) -> None:
        with replica.client(token) as c:
            for answer in (
                c.post("/v1/resume", json={"reason": "x"}),
                c.post("/v1/resume/approvals", json={}),
                c.get("/v1/whoami"),
            ):
                assert answer.status_code == 401, answer.text
                assert "an admin revoked this person's access" in answer.json()["detail"]

    try:
        earlier = idp.token(sub="user-7", email="erin@example.com", groups=["governance"])
        a, b = start("a"), start("b")
        for replica in (a, b):
            with replica.client(earlier) as c:
                assert c.get("/v1/whoami").json()["role"] == "approver"
        env = {**shared, "BREAKGLASS_STATE_DIR": str(tmp_path / "a")}
        _cli(env, tmp_path, "serve", "session", "revoke", "Erin@example.com", "--reason", "left")
        time.sleep(0.5)  # token_refresh is 0.2 s here
        refused(a, earlier)
        refused(b, earlier)
        refused(start("c"), earlier)
    finally:
        for replica in replicas:
            replica.stop()
        idp.close()
