"""npm packages the tests use (axe-core, OpenFeature's Node clients), installed from a lock file."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def npm_ci(directory: Path, marker: Path, *, timeout: float = 300.0) -> None:
    """Run ``npm ci`` in ``directory`` unless ``marker`` (a file it installs) exists already.

    Raises:
        RuntimeError: npm is missing or ``npm ci`` failed; the message says which.
    """
    if marker.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm not found: install Node.js >= 20 (needed in {directory})")
    done = subprocess.run(  # noqa: S603 -- a fixed command on the lock file in the repository
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm ci failed in {directory}: {done.stderr.strip()[-800:]}")
