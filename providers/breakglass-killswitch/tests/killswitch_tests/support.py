"""Helpers shared by the tests: running the CLIs as real processes, signing keys."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn

from breakglass_killswitch.server import build_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from breakglass_killswitch import Store, Switch
    from killswitch_tests.kubeserver import KubeApiServer

CLI = str(Path(sys.executable).parent / "breakglass-killswitch")
BREAKGLASS = str(Path(sys.executable).parent / "breakglass")


def cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``breakglass-killswitch --config <config> <args>`` as a separate process."""
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    return subprocess.run(
        [CLI, "--config", str(config), *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=120,
        check=False,
    )


def breakglass(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``breakglass <args>`` (the project's CLI) as a separate process in ``tmp_path``.

    None of this process's ``BREAKGLASS_*`` variables reach it: its state is under
    ``tmp_path / "bridge"`` and its settings are ``env``.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    clean |= {"BREAKGLASS_STATE_DIR": str(tmp_path / "bridge")}
    return subprocess.run(
        [BREAKGLASS, *args],
        capture_output=True,
        text=True,
        env=clean | env,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )


@contextlib.contextmanager
def serving(switch: Switch) -> Iterator[str]:
    """The switch's HTTP API on uvicorn, on a free loopback port; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(build_app(switch), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def control_plane_switch(tmp_path: Path, kube: KubeApiServer) -> tuple[Path, Store, Switch]:
    """A switch that trusts a fresh control-plane key: the key's PEM file, the store, the switch."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from breakglass_killswitch import Store, Switch, load_config
    from breakglass_killswitch.authorisation import private_key_pem, public_key_text
    from killswitch_tests.conftest import STANDARD_TARGETS, write_config

    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "control-plane.pem"
    key_file.write_bytes(private_key_pem(key))
    extra = f'[resume]\ncontrol_plane_keys = ["{public_key_text(key.public_key())}"]\n'
    config = load_config(
        write_config(tmp_path, kube, kube.token(), targets=extra + STANDARD_TARGETS)
    )
    store = Store(config.state_dir)
    return key_file, store, Switch(config, store)
