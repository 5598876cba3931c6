"""The README's commands and snippets, extracted from README.md and run as written.

Each fenced block is found by its content, so an edited block is run as edited and a new block
fails ``test_every_block_is_accounted_for`` until it is run here or listed in ``RUN_ELSEWHERE``
with the test that runs it. Two rewrites only: ``/var/lib/...`` becomes a temporary directory, and
``breakglass watch`` (which runs until Ctrl-C) is stopped after it has shown the state.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.live  # real processes

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)

RUN_HERE = (
    'eval "$(_BREAKGLASS_COMPLETE',
    "export BREAKGLASS_STATE_DIR",
    "import breakglass",
    "from openfeature import api",
    "breakglass audit keygen",
    "breakglass probe --provider local",
)
RUN_ELSEWHERE = {
    "make demo": "the Makefile itself (make demo / make test)",
    "make dist": "tests/test_install.py (the wheels in a fresh virtualenv)",
    'pip install "breakglass[serve] @ git+': "needs the repository's public URL; the wheel path is tests/test_install.py",
    "BREAKGLASS_STATE_DIR=/var/lib/breakglass-serve breakglass serve": "tests/test_serve_api.py, tests/test_serve_console.py (a server until stopped)",
    "curl -X POST": "tests/test_serve_api.py (the halt API with a token)",
    "BREAKGLASS_PROVIDER=launchdarkly BREAKGLASS_RELAY__OFREP": "tests/test_relay_live.py, tests/test_relay_ofrep.py (a server until stopped, a LaunchDarkly account)",
    "breakglass notify check": "tests/test_notify_cli.py (needs a policy file)",
}


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer((ROOT / "README.md").read_text())]


def _block(start: str) -> str:
    found = [body for _, body in _blocks() if body.startswith(start)]
    assert len(found) == 1, f"README has {len(found)} blocks starting {start!r}"
    return found[0]


def test_every_block_is_accounted_for() -> None:
    for lang, body in _blocks():
        assert lang in {"bash", "python", "text"}, lang
        assert body.startswith(RUN_HERE) or body.startswith(tuple(RUN_ELSEWHERE)), body


def _commands(block: str) -> list[str]:
    """Logical lines (a trailing backslash continues), comments left to the shell."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


@pytest.fixture
def state_env(tmp_path: Path, shell_env: dict[str, str]) -> dict[str, str]:
    """The shell's environment with the state under ``tmp_path/state``."""
    shell_env["BREAKGLASS_STATE_DIR"] = str(tmp_path / "state")
    return shell_env


def _ok(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``args``; fails with what it printed unless it exits 0."""
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args[-1]}\n{result.stdout}\n{result.stderr}"
    return result


def _go_live(cwd: Path, env: dict[str, str]) -> None:
    """The local flag does not exist until someone sets it (it reads halted): turn it on."""
    _ok(["breakglass", "resume", "--reason", "go live"], cwd, env)


def _run_block(
    block: str, cwd: Path, env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    done = []
    for line in _commands(block.replace("/var/lib/", f"{cwd}/var/")):
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.split("#")[0].strip()
            continue
        if line.startswith("breakglass watch"):
            done.append(_until_shown(line, cwd, env))
            continue
        done.append(_ok(["bash", "-c", line], cwd, env))
    return done


def _until_shown(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {line}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        # Ctrl-C once the first state is on the screen: a fixed wait interrupted a slow start instead.
        first = proc.stdout.readline()
        assert first, f"watch stopped by itself: {proc.communicate(timeout=30)[1]}"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=30)
    finally:
        # A watch left running by a failure here would fail a later test as a leaked pipe instead.
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0, err
    return subprocess.CompletedProcess(line, 0, first + out, err)


def test_using_it_on_one_host(tmp_path: Path, shell_env: dict[str, str]) -> None:
    results = _run_block(_block("export BREAKGLASS_STATE_DIR"), tmp_path, shell_env)
    watched = results[-1].stdout
    assert "HALTED" in watched
    assert "last change: halted by alice" in watched


def test_the_service_snippets(tmp_path: Path, state_env: dict[str, str]) -> None:
    """The guard snippet, then the OpenFeature one, in one service process."""
    _go_live(tmp_path, state_env)
    openfeature = _block("from openfeature import api").splitlines()
    read = openfeature[-1].split("  #")[0]
    service = "\n".join(
        [
            openfeature[0],
            "async def app(scope, receive, send): ...  # the service's own ASGI app",
            _block("import breakglass"),
            "with bridge.guard().admit():",
            "    print('admitted')",
            f"print({read})",
        ]
    )
    done = _ok([sys.executable, "-c", service], tmp_path, state_env, timeout=60)
    assert done.stdout.split() == ["admitted", "True"]


def test_audit_history(tmp_path: Path, state_env: dict[str, str]) -> None:
    _go_live(tmp_path, state_env)
    _run_block(_block("breakglass audit keygen"), tmp_path, state_env)
    assert (tmp_path / "2026-08-21.jsonl").stat().st_size > 0
    assert (tmp_path / "aug.csv").read_text().count("\n") >= 2


def test_proving_the_halt_time(tmp_path: Path, state_env: dict[str, str]) -> None:
    _run_block(_block("breakglass probe --provider local"), tmp_path, state_env)
    assert "<testsuite" in (tmp_path / "probe.xml").read_text()


def test_shell_completion(tmp_path: Path, shell_env: dict[str, str]) -> None:
    """The line as written, then what bash completes after `breakglass st`."""
    line = _block('eval "$(_BREAKGLASS_COMPLETE').strip()
    script = (
        f"{line}\n"
        "complete -p breakglass\n"
        "COMP_WORDS=(breakglass st); COMP_CWORD=1; _breakglass_completion breakglass\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = _ok(["bash", "-c", script], tmp_path, shell_env, timeout=60)
    assert "-F _breakglass_completion breakglass" in done.stdout
    assert "status" in done.stdout.splitlines()
