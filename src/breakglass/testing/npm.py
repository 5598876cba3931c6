"""npm packages the tests use (axe-core, OpenFeature's Node clients), installed from a lock file."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextmanager
def _alone_in(directory: Path) -> Iterator[None]:
    # Test processes run side by side (pytest -n): two `npm ci` in one directory delete each
    # other's files, and a reader must not find a tree half installed. The lock is on the
    # directory itself, so nothing is left behind in the repository.
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def npm_ci(directory: Path, marker: Path, *, timeout: float = 300.0) -> None:
    """Run ``npm ci`` in ``directory`` unless ``marker`` (a file it installs) exists already.

    One process at a time per directory; the others wait for it and then find ``marker``.

    Raises:
        RuntimeError: npm is missing or ``npm ci`` failed or took longer than ``timeout``
            seconds; the message says which.
    """
    with _alone_in(directory):
        if marker.exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"npm not found: install Node.js >= 20 (needed in {directory})")
        try:
            done = subprocess.run(  # noqa: S603 -- a fixed command on the lock file in the repository
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"npm ci in {directory} took longer than {timeout:g} s") from None
        if done.returncode != 0:
            raise RuntimeError(f"npm ci failed in {directory}: {done.stderr.strip()[-800:]}")
