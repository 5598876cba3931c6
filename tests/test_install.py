"""A wheel-only install in a fresh virtualenv, as a user outside this repository would get it.

``uv build`` makes the wheels of the core and of every adapter (what ``make dist`` does); a new
virtualenv gets the locked third-party dependencies from uv's cache (offline) and breakglass
itself only from those wheels (``--no-index --find-links``). Nothing here reads the source tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytestmark = pytest.mark.live  # builds wheels and a virtualenv (about 30 s)

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = [
    "breakglass",
    "breakglass-unleash",
    "breakglass-launchdarkly",
    "breakglass-flagsmith",
    "breakglass-killswitch",
]


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if found is None:
        pytest.fail("uv not found (make install puts it in .tools/bin/uv)")
    return found


def _run(
    cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(dist, venv)``: the built wheels, and a fresh virtualenv with all of them installed."""
    work = tmp_path_factory.mktemp("install")
    dist, venv, lock = work / "dist", work / "venv", work / "lock"
    uv = _uv()
    built = _run([uv, "build", "--all-packages", "--offline", "--out-dir", str(dist)], cwd=ROOT)
    assert built.returncode == 0, built.stderr
    lock.mkdir()
    exported = _run(
        [uv, "export", "--frozen", "--no-dev", "--all-packages", "--no-emit-workspace",
         "--format", "pylock.toml", "--quiet", "--output-file", str(lock / "pylock.toml")],
        cwd=ROOT,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    created = _run([uv, "venv", "--quiet", "--python", "python3", str(venv)], cwd=work)
    assert created.returncode == 0, created.stderr
    python = str(venv / "bin" / "python")
    deps = _run(
        [uv, "pip", "install", "--offline", "--python", python, "-r", str(lock / "pylock.toml")],
        cwd=work,
    )
    assert deps.returncode == 0, deps.stderr
    ours = _run(
        [uv, "pip", "install", "--offline", "--no-index", "--find-links", str(dist),
         "--python", python, *DISTRIBUTIONS],
        cwd=work,
    )  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    return dist, venv


def _breakglass(venv: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), **env}
    return _run([str(venv / "bin" / "breakglass"), *args], cwd=cwd, env=clean)


def test_every_wheel_carries_the_licence_and_pins_the_core(installed: tuple[Path, Path]) -> None:
    dist, _ = installed
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == len(DISTRIBUTIONS)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            carried = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
            assert carried, f"{wheel.name} has no LICENSE"
            assert archive.read(carried[0]).decode() == licence
            meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
            meta = Parser().parsestr(archive.read(meta_name).decode())
        assert meta["License-Expression"] == "Apache-2.0"
        # The README is the package page: a relative link there points nowhere.
        description = meta.get_payload()
        assert isinstance(description, str)
        assert description.startswith(f"# {meta['Name']}\n"), description[:80]
        targets = re.findall(r"\]\(([^)\s]*)", description) + re.findall(
            r"href=\"([^\"]*)", description
        )
        relative = [t for t in targets if not t.startswith(("https://", "http://", "mailto:", "#"))]
        assert not relative, (meta["Name"], relative)
        assert "Programming Language :: Python :: 3.11" in meta.get_all("Classifier", [])
        requires = meta.get_all("Requires-Dist", [])
        if meta["Name"] in {
            "breakglass-unleash",
            "breakglass-launchdarkly",
            "breakglass-flagsmith",
        }:
            assert "breakglass<0.2,>=0.1" in requires, requires
        if meta["Name"] == "breakglass-killswitch":  # it stands alone
            assert not [r for r in requires if r.split("<")[0].split(">")[0] == "breakglass"]


def test_wheel_install_runs_version_status_demo_and_an_adapter(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, venv = installed
    state = {"BREAKGLASS_STATE_DIR": str(tmp_path / "state")}

    version = _breakglass(venv, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout == "breakglass 0.1.0\n"

    status = _breakglass(venv, "status", "--json", cwd=tmp_path, **state)
    assert status.returncode == 3, status.stderr
    assert json.loads(status.stdout)["reason"] == "flag_missing"
    resumed = _breakglass(venv, "resume", "--reason", "wheel check", cwd=tmp_path, **state)
    assert resumed.returncode == 0, resumed.stderr
    assert _breakglass(venv, "status", cwd=tmp_path, **state).returncode == 0

    # Installed without the [demo] extra: one line naming it, never a traceback.
    demo = _breakglass(venv, "demo", cwd=tmp_path, **state)
    assert demo.returncode == 1
    assert demo.stdout == ""
    assert demo.stderr.count("\n") == 1, demo.stderr
    assert "breakglass[demo]" in demo.stderr

    listing = _breakglass(venv, "providers", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    found = {p["name"]: (p["package"], p["version"]) for p in json.loads(listing.stdout)}
    assert found == {
        "local": ("breakglass", "0.1.0"),
        "relay": ("breakglass", "0.1.0"),
        "unleash": ("breakglass-unleash", "0.1.0"),
        "launchdarkly": ("breakglass-launchdarkly", "0.1.0"),
        "flagsmith": ("breakglass-flagsmith", "0.1.0"),
    }
    # The adapter is loaded and asks for its own settings, by name.
    unleash = _breakglass(venv, "status", cwd=tmp_path, BREAKGLASS_PROVIDER="unleash", **state)
    assert unleash.returncode == 1
    assert "BREAKGLASS_UNLEASH__URL" in unleash.stderr
    assert "Traceback" not in unleash.stderr

    killswitch = _run([str(venv / "bin" / "breakglass-killswitch"), "--help"], cwd=tmp_path)
    assert killswitch.returncode == 0, killswitch.stderr
    # Nothing came from the source tree.
    site = _run(
        [str(venv / "bin" / "python"), "-c", "import breakglass; print(breakglass.__file__)"],
        cwd=tmp_path,
    )
    assert str(venv) in site.stdout
    assert os.fspath(ROOT) not in site.stdout


def test_install_from_git_as_the_readme_says(tmp_path: Path) -> None:
    """The README's Git lines, with REPO a local clone's URL and REF this commit."""
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith('pip install "breakglass')]
    assert len(lines) == 2, lines
    requirements = [line.removeprefix("pip install ").strip('"') for line in lines]
    ref = _run(["git", "rev-parse", "HEAD"], cwd=ROOT).stdout.strip()
    repo = f"git+file://{ROOT}"
    wanted = [r.replace("git+$REPO", repo).replace("$REF", ref) for r in requirements]
    uv, venv, lock = _uv(), tmp_path / "venv", tmp_path / "lock"
    lock.mkdir()
    exported = _run(
        [uv, "export", "--frozen", "--no-dev", "--all-packages", "--no-emit-workspace",
         "--extra", "serve", "--format", "pylock.toml", "--quiet",
         "--output-file", str(lock / "pylock.toml")],
        cwd=ROOT,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert (
        _run([uv, "venv", "--quiet", "--python", "python3", str(venv)], cwd=tmp_path).returncode
        == 0
    )
    python = str(venv / "bin" / "python")
    deps = _run(
        [uv, "pip", "install", "--offline", "--python", python, "-r", str(lock / "pylock.toml")],
        cwd=tmp_path,
    )
    assert deps.returncode == 0, deps.stderr
    ours = _run([uv, "pip", "install", "--offline", "--python", python, *wanted], cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr
    listing = _breakglass(venv, "providers", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "unleash" in {p["name"] for p in json.loads(listing.stdout)}
    serve = _run([python, "-c", "import fastapi, uvicorn"], cwd=tmp_path)  # the [serve] extra came
    assert serve.returncode == 0, serve.stderr
