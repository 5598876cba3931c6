"""OpenTelemetry spans of halts, resumes and target calls, sent over OTLP/HTTP to a local receiver,
and the token commands of the CLI."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from breakglass.serve.settings import ServeSettings
from breakglass.testing.serve import running_serve

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.live


class Collector:
    """Accepts OTLP/HTTP protobuf trace exports on loopback and keeps every span."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def test_halt_and_resume_spans_with_a_child_per_target(
    tmp_path: Path, collector: Collector
) -> None:
    settings = ServeSettings(path=tmp_path / "serve.db", otlp_endpoint=collector.endpoint)
    with running_serve(tmp_path, serve=settings) as serve:
        assert serve.wait_active(True)
        with serve.client("approver") as c:
            assert c.post("/v1/halt", json={"reason": "traced"}).status_code == 200
            assert c.post("/v1/resume", json={"reason": "traced"}).status_code == 200
    # Closing serve flushed the spans.
    by_name: dict[str, list[Any]] = {}
    for span in collector.spans:
        by_name.setdefault(span.name, []).append(span)
    assert {"breakglass.halt", "breakglass.resume", "breakglass.target"} <= set(by_name)
    halt = by_name["breakglass.halt"][0]
    targets = by_name["breakglass.target"]
    assert len(targets) == 2
    assert any(t.parent_span_id == halt.span_id and t.trace_id == halt.trace_id for t in targets)
    attrs = {a.key: a.value.string_value for a in halt.attributes}
    assert attrs["breakglass.actor"] == "token:approver-1"


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("breakglass")
    return subprocess.run(
        [str(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_commands_show_the_secret_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env["BREAKGLASS_STATE_DIR"] = str(tmp_path)
    made = _cli(
        env,
        tmp_path,
        "serve",
        "token",
        "create",
        "--name",
        "pager bot",
        "--role",
        "halter",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    assert token.startswith("bgt_")
    listed = _cli(env, tmp_path, "serve", "token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    # bgt_<id>_<secret>: the secret is URL-safe base64 and may itself hold "_".
    secret = token.split("_", 2)[2]
    assert len(secret) >= 32
    assert secret not in listed.stdout
    assert [t["name"] for t in json.loads(listed.stdout)] == ["pager bot"]
    again = _cli(
        env, tmp_path, "serve", "token", "create", "--name", "pager bot", "--role", "viewer"
    )
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert "Traceback" not in again.stderr
    wrong = _cli(env, tmp_path, "serve", "token", "create", "--name", "x", "--role", "god")
    assert wrong.returncode == 2
    revoked = _cli(env, tmp_path, "serve", "token", "revoke", "pager bot")
    assert revoked.returncode == 0, revoked.stderr
    twice = _cli(env, tmp_path, "serve", "token", "revoke", "pager bot")
    assert twice.returncode == 1
    assert "no live token" in twice.stderr
    # The stored form is a hash: the secret is nowhere in the database file.
    assert token.split("_", 2)[2].encode() not in (tmp_path / "serve.db").read_bytes()
