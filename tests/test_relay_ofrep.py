"""OFREP on the relay: the endpoint's shapes, then the real OFREP providers for Python and Node.

The point of every live check: a client that passes ``true`` as its default
reads ``false`` whenever the relay is unsure, because the relay answers the
served flag with a value and a reason, never an error shape.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider

from breakglass.engine import StateEngine
from breakglass.local.store import LocalStore
from breakglass.ofrep import MAX_BODY, OfrepEndpoint
from breakglass.testing import ManualClock, ScriptedSource
from breakglass.testing.npm import npm_ci
from breakglass.testing.relay import RelayProcess
from breakglass.testing.serve import running_serve

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "system-active"
NODE_DIR = Path(__file__).parent / "ofrep_node"
PATH = f"/ofrep/v1/evaluate/flags/{KEY}"


@pytest.fixture
def scripted(clock: ManualClock) -> Iterator[tuple[StateEngine, ScriptedSource]]:
    src = ScriptedSource("local", clock)
    engine = StateEngine(KEY, [src], max_staleness=30.0, clock=clock)
    engine.start()
    yield engine, src
    engine.close()


def test_served_flag_always_answers_with_a_value(
    scripted: tuple[StateEngine, ScriptedSource],
) -> None:
    engine, src = scripted
    endpoint = OfrepEndpoint(engine)
    unsure = endpoint.handle("POST", PATH, b'{"context": {"targetingKey": "u"}}', {})
    assert unsure.status == 200
    assert unsure.body is not None
    assert unsure.body["value"] is False
    assert unsure.body["reason"] == "DEFAULT"
    assert unsure.body["metadata"]["cause"] == "unconfirmed"
    assert "errorCode" not in unsure.body
    src.confirm(True)
    active = endpoint.handle("POST", PATH, b"", {})
    assert active.body is not None
    assert active.body["value"] is True
    assert active.body["variant"] == "on"
    assert "confirmed_at" in active.body["metadata"]


def test_error_shapes(scripted: tuple[StateEngine, ScriptedSource]) -> None:
    endpoint = OfrepEndpoint(scripted[0])
    other = endpoint.handle("POST", "/ofrep/v1/evaluate/flags/other", b"{}", {})
    assert (other.status, other.body) == (
        404,
        {
            "key": "other",
            "errorCode": "FLAG_NOT_FOUND",
            "errorDetails": "this relay serves only 'system-active'",
        },
    )
    bad = endpoint.handle("POST", PATH, b"{not json", {})
    assert bad.status == 400
    assert bad.body is not None
    assert bad.body["errorCode"] == "PARSE_ERROR"
    assert bad.body["key"] == KEY
    deep = endpoint.handle("POST", PATH, b"[" * 100_000 + b"]" * 100_000, {})
    assert deep.status == 400
    context = endpoint.handle("POST", PATH, b'{"context": 3}', {})
    assert context.body is not None
    assert context.body["errorCode"] == "INVALID_CONTEXT"
    huge = endpoint.handle("POST", PATH, b" " * (MAX_BODY + 1), {})
    assert huge.status == 400
    assert endpoint.handle("GET", PATH, b"", {}).status == 405
    assert endpoint.handle("POST", "/elsewhere", b"", {}).status == 404


def test_bulk_etag_follows_the_decision_not_its_age(
    scripted: tuple[StateEngine, ScriptedSource], clock: ManualClock
) -> None:
    engine, src = scripted
    endpoint = OfrepEndpoint(engine)
    src.confirm(True)
    first = endpoint.handle("POST", "/ofrep/v1/evaluate/flags", b"{}", {})
    assert first.status == 200
    assert first.body is not None
    assert first.body["flags"][0]["value"] is True
    etag = first.headers["ETag"]
    clock.advance(1.0)
    src.confirm(True)
    same = endpoint.handle("POST", "/ofrep/v1/evaluate/flags", b"", {"if-none-match": etag})
    assert (same.status, same.body) == (304, None)
    src.confirm(False)
    changed = endpoint.handle("POST", "/ofrep/v1/evaluate/flags", b"", {"if-none-match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag
    assert changed.body is not None
    assert changed.body["flags"][0]["value"] is False


# ---------------------------------------------------------------- live, with the real clients


def _node_details(url: str, key: str = KEY) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node not found: install Node.js >= 20 for the OFREP client test"
    npm_ci(NODE_DIR, NODE_DIR / "node_modules" / "@openfeature" / "ofrep-provider")
    result = subprocess.run(
        [node, str(NODE_DIR / "evaluate.mjs"), url, key, "true"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-800:]
    details: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return details


@pytest.mark.live
def test_python_and_node_clients_passing_true_read_false_while_unsure(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "local.db")
    store.write(KEY, True, actor="test", reason="start active")
    env = {
        "BREAKGLASS_PROVIDER": "local",
        "BREAKGLASS_STATE_DIR": str(tmp_path / "state"),
        "BREAKGLASS_LOCAL__PATH": str(tmp_path / "local.db"),
        "BREAKGLASS_RELAY__PATH": str(tmp_path / "relay.channel"),
        "BREAKGLASS_RELAY__OFREP": "127.0.0.1:0",
    }
    with RelayProcess(env, tmp_path / "relay.log") as relay:
        url = relay.ofrep_url
        assert url is not None
        api.set_provider_and_wait(OFREPProvider(url), domain="ofrep")
        client = api.get_client("ofrep")

        _eventually(lambda: client.get_boolean_value(KEY, default_value=False) is True)
        details = client.get_boolean_details(KEY, default_value=False)
        assert details.value is True
        assert details.flag_metadata["cause"] == "active"
        assert _node_details(url)["value"] is True

        store.write(KEY, False, actor="test", reason="halt")
        _eventually(lambda: client.get_boolean_value(KEY, default_value=True) is False)
        halted = client.get_boolean_details(KEY, default_value=True)
        assert (halted.value, halted.reason, halted.error_code) == (False, "DISABLED", None)
        node = _node_details(url)
        assert (node["value"], node["reason"], node.get("errorCode")) == (False, "DISABLED", None)

        # Unsure (the flag was deleted upstream): still a value, false, with the cause.
        store.delete(KEY, actor="test", reason="gone")
        _eventually(
            lambda: (
                client.get_boolean_details(KEY, default_value=True).flag_metadata.get("cause")
                == "flag_missing"
            )
        )
        unsure = client.get_boolean_details(KEY, default_value=True)
        assert (unsure.value, unsure.error_code) == (False, None)
        node = _node_details(url)
        assert node["value"] is False
        assert node["flagMetadata"]["cause"] == "flag_missing"

        # Any other key is the documented error shape, and there the caller's default applies.
        other = client.get_boolean_details("other-flag", default_value=True)
        assert other.error_code == "FLAG_NOT_FOUND"
        assert _node_details(url, "other-flag")["errorCode"] == "FLAG_NOT_FOUND"


def _eventually(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


@pytest.mark.live
def test_serve_answers_ofrep_to_a_token_holder(tmp_path: Path) -> None:
    with running_serve(tmp_path) as serve:
        assert serve.wait_active(True), "the local flag never read active"
        token = serve.tokens["viewer"]
        api.set_provider_and_wait(
            OFREPProvider(serve.url, headers_factory=lambda: {"Authorization": f"Bearer {token}"}),
            domain="serve-ofrep",
        )
        client = api.get_client("serve-ofrep")
        assert client.get_boolean_value(KEY, default_value=False) is True
        LocalStore(tmp_path / "local.db").write(KEY, False, actor="test", reason="halt")
        _eventually(lambda: client.get_boolean_value(KEY, default_value=True) is False)
        halted = client.get_boolean_details(KEY, default_value=True)
        assert (halted.value, halted.reason, halted.error_code) == (False, "DISABLED", None)
        with httpx.Client(base_url=serve.url) as anonymous:
            response = anonymous.post(PATH, json={"context": {}})
        assert response.status_code == 401
