"""``breakglass-killswitch serve``: its own tokens, roles, the resume gate, the audit feed."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from breakglass_killswitch import Store, Switch, load_config
from breakglass_killswitch.authorisation import public_key_text, sign_resume
from breakglass_killswitch.tokens import create_token
from killswitch_tests.cluster import NS
from killswitch_tests.conftest import STANDARD_TARGETS, write_config
from killswitch_tests.support import CLI, cli, serving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from killswitch_tests.kubeserver import KubeApiServer

pytestmark = pytest.mark.live
KEY = Ed25519PrivateKey.generate()


class Api:
    def __init__(self, client: httpx.Client, switch: Switch, tokens: dict[str, str]) -> None:
        self.client, self.switch, self.tokens = client, switch, tokens

    def call(self, method: str, path: str, who: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def api(tmp_path: Path, kube: KubeApiServer) -> Iterator[Api]:
    extra = f'[resume]\ncontrol_plane_keys = ["{public_key_text(KEY.public_key())}"]\n'
    config = load_config(
        write_config(tmp_path, kube, kube.token(), targets=extra + STANDARD_TARGETS)
    )
    store = Store(config.state_dir)
    tokens = {
        name: create_token(store, name, role)
        for name, role in [
            ("vera", "viewer"),
            ("hal", "halter"),
            ("alice", "approver"),
            ("bob", "approver"),
        ]
    }
    switch = Switch(config, store)
    try:
        with serving(switch) as url, httpx.Client(base_url=url, timeout=60) as client:
            yield Api(client, switch, tokens)
    finally:
        switch.close()


def test_every_route_but_health_needs_a_token_of_the_right_role(api: Api) -> None:
    assert api.call("GET", "/v1/health", None).json()["ok"] is True
    missing = api.call("GET", "/v1/status", None)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert (
        api.client.get("/v1/status", headers={"Authorization": "Bearer bgks_forged"}).status_code
        == 401
    )
    assert api.call("GET", "/v1/status", "vera").status_code == 200
    denied = api.call("POST", "/v1/halt", "vera", json={"reason": "x"})
    assert denied.status_code == 403
    assert "needs halter" in denied.json()["detail"]
    assert api.call("POST", "/v1/approvals", "hal", json={"reason": "x"}).status_code == 403
    api.switch.store.revoke_token("vera", "2026-01-01T00:00:00.000Z")
    assert api.call("GET", "/v1/status", "vera").status_code == 401


def test_bad_bodies_are_refused_before_anything_happens(api: Api, kube: KubeApiServer) -> None:
    assert api.call("POST", "/v1/halt", "hal", content=b"not json").status_code == 400
    assert api.call("POST", "/v1/halt", "hal", json=["reason"]).status_code == 400
    assert api.call("POST", "/v1/halt", "hal", json={"reason": "  "}).status_code == 422
    assert api.call("POST", "/v1/halt", "hal", json={"reason": "a\x1b[31mred"}).status_code == 422
    assert (
        api.call("POST", "/v1/halt", "hal", content=b"{" + b" " * 70_000 + b"}").status_code == 413
    )
    assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3
    assert api.call("POST", "/v1/resume", "hal", json={"reason": "x"}).status_code == 409


def test_halt_then_resume_through_the_gate(api: Api, kube: KubeApiServer) -> None:
    halted = api.call("POST", "/v1/halt", "hal", json={"reason": "incident 4711"})
    assert halted.status_code == 200, halted.text
    body = halted.json()
    assert body["verdict"] == "HALTED"
    assert body["actor"]["id"] == "hal"
    assert kube.pod_count(NS, "app=model-server", serving_only=False) == 0
    episode = body["episode"]

    status = api.call("GET", "/v1/status", "vera").json()
    assert status["state"] == "halted"
    assert status["episode"]["id"] == episode

    refused = api.call("POST", "/v1/resume", "hal", json={"reason": "all clear"})
    assert refused.status_code == 403
    assert refused.json()["missing"] == [
        "2 more approval(s) by distinct approvers, or a signed authorisation from the control plane"
    ]

    forged = sign_resume(
        Ed25519PrivateKey.generate(),
        switch="test-switch",
        episode=episode,
        issuer="x",
        approvers=["a"],
        reason="r",
    )
    expired = sign_resume(
        KEY,
        switch="test-switch",
        episode=episode,
        issuer="x",
        approvers=["a"],
        reason="r",
        issued_at=time.time() - 1000,
        ttl=300,
    )
    elsewhere = sign_resume(
        KEY, switch="other-switch", episode=episode, issuer="x", approvers=["a"], reason="r"
    )
    too_long = sign_resume(
        KEY,
        switch="test-switch",
        episode=episode,
        issuer="x",
        approvers=["a"],
        reason="r",
        ttl=86400,
    )
    for token, why in [
        (forged, "matches no configured"),
        (expired, "has not expired"),
        (elsewhere, "for switch 'test-switch'"),
        (too_long, "lifetime of at most 900 s"),
        ("bgresume1.e30.AAAA", "matches no configured"),
        ("garbage", "not a bgresume1"),
    ]:
        answer = api.call("POST", "/v1/resume", "hal", json={"reason": "x", "authorisation": token})
        assert answer.status_code == 403, token
        assert why in answer.text, (why, answer.text)
    assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 0

    first = api.call("POST", "/v1/approvals", "alice", json={"reason": "checked the fix"}).json()
    assert first["approvers"] == ["alice"]
    again = api.call("POST", "/v1/approvals", "alice", json={"reason": "twice"}).json()
    assert again["added"] is False
    assert api.call("POST", "/v1/resume", "hal", json={"reason": "x"}).status_code == 403
    api.call("POST", "/v1/approvals", "bob", json={"reason": "agreed"})

    resumed = api.call("POST", "/v1/resume", "alice", json={"reason": "approved by alice and bob"})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["verdict"] == "RESUMED"
    assert kube.get("apps", "deployments", NS, "model-server")["spec"]["replicas"] == 3
    assert api.call("GET", "/v1/status", "vera").json()["state"] == "active"


def test_a_signed_authorisation_resumes_once(api: Api, kube: KubeApiServer) -> None:
    episode = api.call("POST", "/v1/halt", "hal", json={"reason": "incident"}).json()["episode"]
    token = sign_resume(
        KEY,
        switch="test-switch",
        episode=episode,
        issuer="breakglass-serve",
        approvers=["alice", "bob"],
        reason="gate passed",
    )
    assert (
        api.call(
            "POST", "/v1/resume", "hal", json={"reason": "gate passed", "authorisation": token}
        ).status_code
        == 200
    )
    api.call("POST", "/v1/halt", "hal", json={"reason": "again"})
    replay = api.call(
        "POST", "/v1/resume", "hal", json={"reason": "replay", "authorisation": token}
    )
    assert replay.status_code == 403


def test_the_audit_feed_pages_records_in_the_shared_format(api: Api) -> None:
    api.call("POST", "/v1/halt", "hal", json={"reason": "incident 4711"})
    api.call("POST", "/v1/resume", "hal", json={"reason": "too early"})
    api.call("POST", "/v1/approvals", "alice", json={"reason": "ok"})

    first = api.call("GET", "/v1/audit?limit=2", "vera").json()
    assert first["schema"] == "breakglass.audit-feed/v1"
    assert first["more"] is True
    rest = api.call("GET", f"/v1/audit?after={first['cursor']}", "vera").json()
    assert rest["more"] is False
    records = first["records"] + rest["records"]
    assert [r["vendor_event_type"] for r in records] == [
        "halt",
        "resume-refused",
        "resume-approval",
    ]
    halt = records[0]
    assert halt["schema"] == "breakglass.audit/v1"
    assert halt["id"] == f"killswitch:{halt['vendor_event_id']}"
    assert (halt["action"], halt["value_before"], halt["value_after"]) == ("disabled", True, False)
    assert halt["actor"] == {"kind": "api_token", "id": "hal", "email": None, "name": "hal"}
    assert halt["comment"] == "incident 4711"
    assert halt["flag_key"] == "system-active"
    assert halt["environment"] == "test-switch"
    assert halt["raw"]["verdict"] == "HALTED"
    assert records[1]["raw"]["missing"]
    assert api.call("GET", "/v1/audit?after=x", "vera").status_code == 400
    assert api.call("GET", "/v1/audit", None).status_code == 401


def test_serve_runs_as_its_own_process(tmp_path: Path, kube: KubeApiServer) -> None:
    config = write_config(tmp_path, kube, kube.token(), targets=STANDARD_TARGETS)
    token = cli(config, "token", "create", "--name", "control-plane", "--role", "halter")
    assert token.returncode == 0, token.stderr
    assert token.stdout.startswith("bgks_")
    assert token.stdout.strip() not in (tmp_path / "state" / "killswitch.db").read_bytes().decode(
        "latin-1"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [CLI, "--config", str(config), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(
                        f"serve did not start: {server.stdout.read() if server.stdout else ''}"
                    )
                time.sleep(0.2)
        halted = httpx.post(
            f"{url}/v1/halt",
            json={"reason": "from the control plane"},
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
            timeout=60,
        )
        assert halted.status_code == 200, halted.text
        assert halted.json()["verdict"] == "HALTED"
    finally:
        server.terminate()
        server.communicate(timeout=20)
    assert kube.pod_count(NS, "app=model-server") == 0
