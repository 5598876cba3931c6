"""A whole staging environment on loopback, for ``breakglass demo`` and the tests.

Everything is the real thing, only small: serve on the embedded local
provider (its SQLite store), the notification chain sending signed webhooks
to local receivers, readers (bridges) guarding sample inference services and
reporting to serve, the resumption gate of the policy file, and an Ed25519
key pair for the evidence. A receiver stands for a person: it answers the
webhook, then, after a moment, opens the acknowledgement link the message
carries and presses its button (``POST /notify/ack``), as someone on call
would. A group listed in ``silent`` never acknowledges.

Needs the ``serve`` and ``drill`` extras (uvicorn, httpx, jinja2).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator

    from breakglass.bridge import Bridge
    from breakglass.demo import SampleServer

GROUPS = {"on-call": "immediate", "governance-lead": "within"}
SERVICES = (("credit-scoring-api", 2, True), ("batch-scorer", 1, False))
"""(service, readers, guarded endpoint the drill sends traffic to)."""


@dataclass
class Receiver:
    """Webhook receivers on one loopback port; each path is a group's inbox."""

    serve_url: str
    silent: frozenset[str] = frozenset()
    ack_delay: float = 0.3
    received: list[dict[str, Any]] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base's name
                del format, args

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()
                receiver.arrived(self.path.strip("/"), body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop receiving."""
        self._server.shutdown()
        self._server.server_close()

    def arrived(self, group: str, body: bytes) -> None:
        """A webhook for ``group``: kept, and acknowledged a moment later unless silent."""
        try:
            event = json.loads(body)
        except ValueError:
            return
        data = event.get("data") or {}
        self.received.append(
            {"group": group, "title": data.get("title"), "type": event.get("type")}
        )
        link = (data.get("links") or {}).get("Acknowledge")
        if group in self.silent or not link or data.get("kind") != "halt":
            return
        threading.Thread(target=self._acknowledge, args=(group, link), daemon=True).start()

    def _acknowledge(self, group: str, link: str) -> None:
        import httpx

        time.sleep(self.ack_delay)
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        form = {**{k: query.get(k, "") for k in ("s", "g", "e", "sig")}, "name": f"{group} duty"}
        # The button on the link's page: a form POST to serve's /notify/ack.
        answer = httpx.post(f"{self.serve_url}/notify/ack", data=form, timeout=30.0)
        if answer.status_code == 200:
            self.acknowledged.append(group)


@dataclass
class LocalEnvironment:
    """What :func:`local_environment` started."""

    root: Path
    serve_url: str
    policy_path: Path
    signing_key: Path
    public_key: Path
    evidence_dir: Path
    receiver: Receiver
    tokens: dict[str, str]
    readers: list[Bridge] = field(default_factory=list)
    services: list[SampleServer] = field(default_factory=list)
    settings: Any = None


def _webhook_secret() -> str:
    # Standard Webhooks secrets are standard base64 after the prefix; a URL-safe alphabet
    # ('-', '_') fails at signing time, and the notification would be retried forever.
    return "whsec_" + base64.b64encode(os.urandom(24)).decode("ascii")


def _policy(
    serve_url: str,
    receiver: str,
    tokens: dict[str, str],
    endpoints: dict[str, str],
    *,
    declared: str,
    ack_within: str,
    kill_switch: dict[str, Any] | None,
) -> str:
    secret = secrets.token_hex(16)
    readers = "\n".join(
        f'  {{ service = "{service}", count = {count}'
        + (f', url = "{endpoints[service]}"' if service in endpoints else "")
        + " },"
        for service, count, _ in SERVICES
    )
    switch = ""
    if kill_switch is not None:
        approvers = ", ".join(f'"{t}"' for t in kill_switch["approver_tokens"])
        switch = (
            "\n[drill.kill_switch]\n"
            f'url = "{kill_switch["url"]}"\n'
            f'token = "{kill_switch["token"]}"\n'
            f"approver_tokens = [{approvers}]\n"
        )
    return f"""# A drill of the local environment: serve, readers and receivers on loopback.
[notify]
system = "Credit scoring (drill environment)"
console_url = "{serve_url}"
ack_secret = "{secret}"

[notify.groups.on-call]
kind = "on-call"
timeframe = "immediate"
ack_within = "{ack_within}"
channels = [{{ type = "webhook", url = "{receiver}/on-call", secret = "{_webhook_secret()}" }}]

[notify.groups.governance-lead]
kind = "governance-lead"
within = "{ack_within}"
channels = [{{ type = "webhook", url = "{receiver}/governance-lead", secret = "{_webhook_secret()}" }}]

[resume]
approvals = 2

[drill]
environment = "local (loopback)"
serve_url = "{serve_url}"
lead = "drill-lead"
declared_halt_time = "{declared}"
groups = ["on-call", "governance-lead"]
alert_within = "30s"
readers = [
{readers}
]
criteria = [
  {{ item = "root-cause", by = "ana", answer = "Drill: halted on purpose, no fault." }},
  {{ item = "remediation", by = "ana", answer = "Drill: nothing to remedy." }},
  {{ item = "risk", by = "ben", answer = "Drill: risk unchanged." }},
  {{ item = "deployers", by = "drill-lead", answer = "Drill: receivers were told." }},
]
participants = [
  {{ name = "drill-lead", role = "lead", token = "{tokens["drill-lead"]}" }},
  {{ name = "ana", role = "approver", token = "{tokens["ana"]}", approves = true }},
  {{ name = "ben", role = "technical-owner", token = "{tokens["ben"]}", approves = true }},
]
{switch}"""


def _await_fleet(serve_url: str, token: str, count: int, timeout: float = 30.0) -> None:
    """Wait until serve has heard from every reader (they report every second)."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=serve_url, headers={"Authorization": f"Bearer {token}"}) as http:
        while time.monotonic() < deadline:
            summary = http.get("/v1/fleet", timeout=10.0).json()
            if summary.get("active", 0) >= count:
                return
            time.sleep(0.1)
    msg = f"the {count} readers did not report to serve within {timeout:g} s"
    raise RuntimeError(msg)


@contextmanager
def _serve_env(path: Path, signing_key: Path) -> Iterator[None]:
    # serve reads the policy file and the audit export key named by the environment when built.
    from breakglass.audit.settings import PREFIX
    from breakglass.settings import POLICY_FILE_ENV

    values = {POLICY_FILE_ENV: str(path), f"{PREFIX}SIGNING_KEY": str(signing_key)}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def local_environment(  # noqa: PLR0915 -- one place starts and stops the whole environment
    root: Path | None = None,
    *,
    silent: frozenset[str] = frozenset(),
    declared: str = "5s",
    ack_within: str = "30s",
    kill_switch: dict[str, Any] | None = None,
    work_ms: int = 150,
) -> Iterator[LocalEnvironment]:
    """Start serve, receivers, readers and sample services on loopback; stop them after.

    Args:
        root: Where everything lives (a temporary directory, removed after, when ``None``).
        silent: Groups whose receiver never acknowledges.
        declared: The plan's declared halt time.
        ack_within: Each group's timeframe to acknowledge.
        kill_switch: ``{"url", "token", "approver_tokens"}`` of a running kill switch to exercise.
        work_ms: How long one sample inference takes.
    """
    from pydantic import SecretStr

    from breakglass.audit.signing import generate
    from breakglass.bridge import Bridge
    from breakglass.demo import SampleServer, inference_app
    from breakglass.local.store import LocalStore
    from breakglass.middleware import GuardMiddleware
    from breakglass.reports.settings import ReportSettings
    from breakglass.serve.auth import Role, TokenBook
    from breakglass.serve.runtime import build, open_store
    from breakglass.serve.settings import ServeSettings
    from breakglass.settings import LocalSettings, Settings
    from breakglass.testing.serve import UvicornThread, bind_loopback

    owned = root is None
    base = Path(tempfile.mkdtemp(prefix="breakglass-drill-")) if root is None else root
    base.mkdir(parents=True, exist_ok=True)
    LocalStore(base / "local.db").write(
        "system-active", value=True, actor="drill setup", reason="the environment starts running"
    )

    def settings_for(state: str) -> Settings:
        return Settings(
            provider="local",
            state_dir=base / state,
            max_staleness=5.0,
            local=LocalSettings(path=base / "local.db", poll_interval=0.02),
        )

    settings = settings_for("serve-state")
    serve_settings = ServeSettings(path=base / "serve.db", token_refresh=0.2)
    book = TokenBook(open_store(settings, serve_settings))
    tokens = {
        name: book.create(name, role, by="drill setup")[1]
        for name, role in (
            ("drill-lead", Role.HALTER),
            ("ana", Role.APPROVER),
            ("ben", Role.APPROVER),
            ("readers", Role.REPORTER),
            ("viewer", Role.VIEWER),
            ("owner", Role.ADMIN),
        )
    }
    sock = bind_loopback()
    serve_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    receiver = Receiver(serve_url, silent=silent)
    keys = base / "keys"
    keys.mkdir(exist_ok=True)
    signing_key, public_key = keys / "audit.key", keys / "audit.pub"
    if not signing_key.exists():
        generate(signing_key, public_key)
    services: list[SampleServer] = []
    readers: list[Bridge] = []
    http: UvicornThread | None = None
    server = None
    try:
        # One guarded sample service per reader that has an endpoint; the drill sends traffic
        # to the first of each service (a load balancer would spread it).
        endpoints: dict[str, str] = {}
        n = 0
        for service, count, guarded in SERVICES:
            for _ in range(count):
                n += 1
                bridge = Bridge.from_settings(settings_for(f"reader-{n}"))
                bridge.report_settings = ReportSettings(
                    url=serve_url, token=SecretStr(tokens["readers"]), interval=1.0, service=service
                )
                readers.append(bridge.start())
                if guarded:
                    app = GuardMiddleware(inference_app(work_ms / 1000), bridge.guard())
                    sample = SampleServer(app)
                    services.append(sample)
                    endpoints.setdefault(service, sample.start())
        policy_path = base / "breakglass-policy.toml"
        policy_path.write_text(
            _policy(
                serve_url,
                receiver.url,
                tokens,
                endpoints,
                declared=declared,
                ack_within=ack_within,
                kill_switch=kill_switch,
            ),
            encoding="utf-8",
        )
        policy_path.chmod(0o600)  # it holds the participants' tokens
        with _serve_env(policy_path, signing_key):
            server = build(settings, serve_settings)
        http = UvicornThread(server.app, sock=sock).start()
        _await_fleet(serve_url, tokens["owner"], len(readers))
        yield LocalEnvironment(
            root=base,
            serve_url=serve_url,
            policy_path=policy_path,
            signing_key=signing_key,
            public_key=public_key,
            evidence_dir=settings.state_dir / "drills",  # where serve's console finds them
            receiver=receiver,
            tokens=tokens,
            readers=readers,
            services=services,
            settings=settings,
        )
    finally:
        for sample in services:
            sample.stop()
        for bridge in readers:
            bridge.close()
        if server is not None:
            server.services.control.hub.close()
        if http is not None:
            http.stop()
        else:
            sock.close()
        if server is not None:
            server.close()
        receiver.close()
        if owned:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
