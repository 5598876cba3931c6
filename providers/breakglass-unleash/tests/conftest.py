"""A real unleash-server on loopback, started and stopped by the test session itself.

The server is the npm package pinned by ``server/package-lock.json`` (``npm ci``
runs once when ``server/node_modules`` is missing). It runs on PostgreSQL: a
fresh database on the machine's server at 127.0.0.1:5432 (user ``postgres``,
trust auth), or a private throw-away cluster when none answers there. Tokens
are random per session, so tests can check that no secret leaks.

If anything here cannot start, the tests that need the server fail with the
reason; they are never skipped.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from openfeature import api
from pydantic import SecretStr

from breakglass.testing.npm import npm_ci
from breakglass_unleash.settings import UnleashSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

SERVER_DIR = Path(__file__).parent / "server"
HOST = "127.0.0.1"
SYSTEM_PG_PORT = 5432
START_TIMEOUT = 90.0
NPM_TIMEOUT = 600.0


class ServerStartError(RuntimeError):
    """The Unleash server (or what it needs) could not be started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def _find_pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


class Postgres:
    """A PostgreSQL to hold the test database: the machine's, or a private cluster."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._psql = _find_pg_bin("psql")
        self.port = SYSTEM_PG_PORT
        self._private_data: Path | None = None
        self._owner: str | None = None
        self.database = f"bg_unleash_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        if self._psql is None:
            raise ServerStartError(
                "psql not found: install the PostgreSQL client (apt-get install postgresql)"
            )
        # BG_UNLEASH_TEST_PG=private forces the throw-away cluster even when 5432 answers.
        if os.environ.get("BG_UNLEASH_TEST_PG") == "private" or not self._answers(SYSTEM_PG_PORT):
            self._start_private()
        result = self._sql(f'CREATE DATABASE "{self.database}"')
        if result.returncode != 0:
            raise ServerStartError(f"cannot create the test database: {result.stderr.strip()}")

    @property
    def url(self) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{self.database}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if self._private_data is not None:
            pg_ctl = _find_pg_bin("pg_ctl")
            if pg_ctl:
                with contextlib.suppress(Exception):
                    self._as_owner(
                        [pg_ctl, "-D", str(self._private_data), "-m", "immediate", "-w", "stop"], 30
                    )

    def _sql(self, statement: str) -> subprocess.CompletedProcess[str]:
        assert self._psql is not None
        cmd = [
            self._psql,
            "-w",
            "-X",
            "-q",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]
        return _run(
            [*cmd, "-c", statement], timeout=30, env={**os.environ, "PGCONNECT_TIMEOUT": "3"}
        )

    def _answers(self, port: int) -> bool:
        assert self._psql is not None
        cmd = [
            self._psql,
            "-w",
            "-X",
            "-q",
            "-h",
            HOST,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]
        try:
            result = _run(
                [*cmd, "-tAc", "select 1"], timeout=10, env={**os.environ, "PGCONNECT_TIMEOUT": "3"}
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def _as_owner(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        # initdb and postgres refuse to run as root.
        if self._owner is not None:
            cmd = ["runuser", "-u", self._owner, "--", *cmd]
        return _run(cmd, timeout=timeout)

    def _start_private(self) -> None:
        initdb, pg_ctl = _find_pg_bin("initdb"), _find_pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise ServerStartError(
                "no PostgreSQL at 127.0.0.1:5432 accepting user postgres with trust auth, "
                "and no initdb/pg_ctl to start a private one (apt-get install postgresql)"
            )
        base = self._workdir / "pg"
        base.mkdir(mode=0o700)
        if os.geteuid() == 0:
            self._owner = "postgres"
            if _run(["id", "postgres"], timeout=10).returncode != 0:
                raise ServerStartError(
                    "running as root without a 'postgres' user to run a private cluster"
                )
            shutil.chown(self._workdir, user="postgres")
            shutil.chown(base, user="postgres")
        data = base / "data"
        result = self._as_owner(
            [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], 120
        )
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed: {result.stderr.strip()[-500:]}")
        self.port = _free_port()
        options = (
            f"-p {self.port} -k {base} -c listen_addresses={HOST} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        result = self._as_owner(
            [
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(base / "postgres.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            90,
        )
        if result.returncode != 0:
            log = (
                (base / "postgres.log").read_text(errors="replace")[-800:]
                if (base / "postgres.log").exists()
                else ""
            )
            raise ServerStartError(
                f"private PostgreSQL did not start: {result.stderr.strip()} {log}"
            )
        self._private_data = data


class UnleashServer:
    """One real unleash-server process on loopback, restartable on the same port and database.

    Attributes:
        admin_token: An admin API token (``*:*.<random>``).
        client_token: A backend token for ``default:development``.
    """

    def __init__(self, workdir: Path, database_url: str) -> None:
        self._workdir = workdir
        self._database_url = database_url
        # 0 until the first start: the server binds a free port itself and names it in its ready
        # file (a port picked free here could be taken in the seconds node takes to listen).
        # Restarts reuse that port, as a vendor coming back would.
        self.port = 0
        self.admin_token = f"*:*.bg-admin-{secrets.token_hex(16)}"
        self.client_token = f"default:development.bg-client-{secrets.token_hex(16)}"
        self.log_path = workdir / "unleash.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._stalled = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @staticmethod
    def install() -> None:
        try:
            npm_ci(
                SERVER_DIR,
                SERVER_DIR / "node_modules" / "unleash-server" / "package.json",
                timeout=NPM_TIMEOUT,
            )
        except RuntimeError as exc:
            raise ServerStartError(str(exc)) from None

    def start(self) -> None:
        """Start the server and wait (bounded) until ``/health`` answers 200."""
        if self.running:
            return
        node = shutil.which("node")
        if node is None:
            raise ServerStartError("node not found: install Node.js >= 20 to run unleash-server")
        ready = self._workdir / "unleash.ready"
        ready.unlink(missing_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": self._database_url,
            "DATABASE_SSL": "false",
            "BG_UNLEASH_PORT": str(self.port),
            "BG_UNLEASH_READY_FILE": str(ready),
            "INIT_ADMIN_API_TOKENS": self.admin_token,
            "INIT_BACKEND_API_TOKENS": self.client_token,
            "SEND_TELEMETRY": "false",
            "CHECK_VERSION": "false",
            "TZ": "UTC",
        }
        env.pop("INIT_CLIENT_API_TOKENS", None)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [node, str(SERVER_DIR / "server.mjs")],
                cwd=SERVER_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"unleash-server exited with {self._process.returncode}: {self.log_tail()}"
                )
            if ready.exists() and self._bound(ready) and self._healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"unleash-server not healthy after {START_TIMEOUT:g} s: {self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        process = self._process
        if process is None:
            return
        if self._stalled:
            self.resume()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._process = None

    def stall(self) -> None:
        """Freeze the server: connections still open, nothing answers (SIGSTOP)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self._stalled = True

    def resume(self) -> None:
        """Undo :meth:`stall`."""
        if self._process is not None and self._stalled:
            self._process.send_signal(signal.SIGCONT)
        self._stalled = False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None and not self._stalled

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def _bound(self, ready: Path) -> bool:
        """Take the port from the ready file ("<pid> <port>"); ``False`` until it is there."""
        fields = ready.read_text(encoding="utf-8").split()
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) == 0:
            return False
        if self.port not in (0, int(fields[1])):
            raise ServerStartError(f"unleash-server came back on port {fields[1]}, not {self.port}")
        self.port = int(fields[1])
        return True

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    # ------------------------------------------------------------------ "the dashboard"

    def admin(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> requests.Response:
        """One Admin API call behind breakglass's back, as a person at the dashboard would make it."""
        headers = {"Authorization": token if token is not None else self.admin_token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return requests.request(
            method,
            f"{self.api_url}{path}",
            headers=headers,
            data=json.dumps(body) if body is not None else None,
            timeout=10,
        )

    def create_flag(
        self, name: str, *, enabled: bool = True, environment: str = "development"
    ) -> None:
        """Create a kill-switch flag with the default strategy, on or off in ``environment``."""
        project = "/admin/projects/default/features"
        response = self.admin("POST", project, {"name": name, "type": "kill-switch"})
        if response.status_code != 201:
            raise AssertionError(
                f"creating {name}: HTTP {response.status_code} {response.text[:300]}"
            )
        response = self.admin(
            "POST",
            f"{project}/{name}/environments/{environment}/strategies",
            {"name": "default", "constraints": [], "parameters": {}},
        )
        if response.status_code != 200:
            raise AssertionError(
                f"strategy for {name}: HTTP {response.status_code} {response.text[:300]}"
            )
        if enabled:
            self.set_flag(name, enabled=True, environment=environment)

    def set_flag(self, name: str, *, enabled: bool, environment: str = "development") -> None:
        """Toggle ``name`` directly through the Admin API."""
        state = "on" if enabled else "off"
        path = f"/admin/projects/default/features/{name}/environments/{environment}/{state}"
        response = self.admin("POST", path)
        if response.status_code != 200:
            raise AssertionError(
                f"turning {name} {state}: HTTP {response.status_code} {response.text[:300]}"
            )

    def only_strategy(
        self, name: str, strategy: dict[str, Any], *, environment: str = "development"
    ) -> None:
        """Replace the flag's strategies in ``environment`` with ``strategy``, as in the dashboard."""
        path = f"/admin/projects/default/features/{name}/environments/{environment}/strategies"
        listed = self.admin("GET", path)
        if listed.status_code != 200:
            raise AssertionError(f"strategies of {name}: HTTP {listed.status_code}")
        added = self.admin("POST", path, strategy)
        if added.status_code != 200:
            raise AssertionError(
                f"strategy for {name}: HTTP {added.status_code} {added.text[:300]}"
            )
        for old in listed.json():
            deleted = self.admin("DELETE", f"{path}/{old['id']}")
            if deleted.status_code != 200:
                raise AssertionError(f"deleting a strategy of {name}: HTTP {deleted.status_code}")

    def exclude_every_app(self, name: str) -> None:
        """One strategy whose constraint admits only an app that does not exist: on, yet false for all."""
        self.only_strategy(
            name,
            {
                "name": "default",
                "parameters": {},
                "constraints": [
                    {"contextName": "appName", "operator": "IN", "values": ["someone-else"]}
                ],
            },
        )

    def default_strategy(self, name: str) -> None:
        """Back to one unconstrained default strategy."""
        self.only_strategy(name, {"name": "default", "parameters": {}, "constraints": []})

    def archive_flag(self, name: str) -> None:
        response = self.admin("DELETE", f"/admin/projects/default/features/{name}")
        if response.status_code not in (200, 202):
            raise AssertionError(
                f"archiving {name}: HTTP {response.status_code} {response.text[:300]}"
            )

    def delete_flag(self, name: str) -> None:
        """Archive, then delete for good."""
        self.archive_flag(name)
        response = self.admin("DELETE", f"/admin/archive/{name}")
        if response.status_code not in (200, 202):
            raise AssertionError(
                f"deleting {name}: HTTP {response.status_code} {response.text[:300]}"
            )

    def revive_flag(self, name: str) -> None:
        response = self.admin("POST", f"/admin/archive/revive/{name}")
        if response.status_code not in (200, 202):
            raise AssertionError(
                f"reviving {name}: HTTP {response.status_code} {response.text[:300]}"
            )

    def settings(self, **overrides: Any) -> UnleashSettings:
        """Adapter settings pointing at this server, tuned for quick tests."""
        values: dict[str, Any] = {
            "url": self.api_url,
            "client_token": SecretStr(self.client_token),
            "admin_token": SecretStr(self.admin_token),
            "app_name": "breakglass-tests",
            "refresh_interval": 0.05,
            "sdk_refresh_interval": 0.5,
            "request_timeout": 0.5,
        }
        values.update(overrides)
        return UnleashSettings(**values)


class ChaosProxy:
    """A loopback HTTP proxy in front of the server that can turn into a broken one.

    ``mode`` is ``"pass"`` (forward everything) or ``"garbage"`` (answer, in turn,
    HTTP 503, malformed JSON, and a body cut short of its Content-Length).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self._turn = 0
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.trust_env = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.mode == "garbage":
                    self._garbage()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                try:
                    upstream = proxy._session.request(
                        self.command,
                        proxy.upstream + self.path,
                        headers=headers,
                        data=body,
                        timeout=10,
                    )
                except requests.RequestException:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in _HOP_HEADERS and key.lower() != "content-encoding":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def _garbage(self) -> None:
                with proxy._lock:
                    proxy._turn += 1
                    turn = proxy._turn % 3
                if turn == 0:
                    payload = b'{"message": "upstream overloaded"}'
                    self.send_response(503)
                elif turn == 1:
                    payload = b'{"name": "not json at all'
                    self.send_response(200)
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "400")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b'{"name": "cut short", "enab')
                    self.close_connection = True
                    return
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle  # noqa: N815 -- http.server's names

        self._server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="chaos-proxy", daemon=True
        )
        self._thread.start()

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._session.close()


_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "host",
        "proxy-connection",
        "te",
        "upgrade",
    }
)


@pytest.fixture(autouse=True)
def _reset_openfeature() -> Iterator[None]:
    """Leave OpenFeature's global registry empty (the conformance suite registers providers)."""
    yield
    api.clear_providers()


@pytest.fixture(scope="session")
def unleash_session() -> Iterator[UnleashServer | ServerStartError]:
    """The session's server, or why it could not start (reported by :func:`unleash_server`)."""
    workdir = Path(tempfile.mkdtemp(prefix="bg-unleash-"))
    # A private PostgreSQL runs as another user and must be able to enter the work dir.
    os.chmod(workdir, 0o755)  # noqa: S103 -- a test-only temp dir, no secrets in it
    postgres = Postgres(workdir)
    server: UnleashServer | None = None
    try:
        UnleashServer.install()
        postgres.start()
        server = UnleashServer(workdir, postgres.url)
        server.start()
    except (ServerStartError, OSError, subprocess.SubprocessError) as exc:
        if server is not None:
            server.stop()
        postgres.close()
        yield (
            exc
            if isinstance(exc, ServerStartError)
            else ServerStartError(f"{type(exc).__name__}: {exc}")
        )
        return
    try:
        yield server
    finally:
        server.stop()
        postgres.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def unleash_server(unleash_session: UnleashServer | ServerStartError) -> UnleashServer:
    """The running server (restarted if a previous test stopped it); fails the test if it cannot start."""
    if isinstance(unleash_session, ServerStartError):
        pytest.fail(f"the Unleash test server could not start: {unleash_session}", pytrace=False)
    server = unleash_session
    server.resume()
    try:
        server.start()
    except ServerStartError as exc:
        pytest.fail(f"the Unleash test server could not restart: {exc}", pytrace=False)
    return server


@pytest.fixture
def flag_name(request: pytest.FixtureRequest) -> str:
    """A flag name unique to the test, so tests never see each other's toggles."""
    return f"bg-{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:6]}".lower()


@pytest.fixture(scope="session")
def chaos_proxy_session(
    unleash_session: UnleashServer | ServerStartError,
) -> Iterator[ChaosProxy | None]:
    if isinstance(unleash_session, ServerStartError):
        yield None
        return
    proxy = ChaosProxy(unleash_session.url)
    yield proxy
    proxy.close()


@pytest.fixture
def chaos_proxy(
    unleash_server: UnleashServer, chaos_proxy_session: ChaosProxy | None
) -> Iterator[ChaosProxy]:
    """A proxy to the running server, in pass mode; back to pass mode after the test."""
    assert chaos_proxy_session is not None
    chaos_proxy_session.mode = "pass"
    yield chaos_proxy_session
    chaos_proxy_session.mode = "pass"
