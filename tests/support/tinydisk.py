"""A real, tiny filesystem that fills up: a size-limited tmpfs mounted for one test (root).

``tiny_disk(dir)`` mounts it, ``fill(dir)`` takes every free byte with a filler file (as
another process on the node would), ``free(filler)`` gives the space back.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tiny_disk(where: Path, size: str = "256k") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("needs root (mount -t tmpfs)")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                   check=True)
    try:
        yield where
    finally:
        # Lazy: a failing test may still hold files open there; do not hide its error.
        subprocess.run(["umount", "--lazy", str(where)], check=True)


def fill(disk: Path, name: str = "filler") -> Path:
    """Write ``disk/name`` until the filesystem refuses another byte (ENOSPC)."""
    filler = disk / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (b"\0" * 4096, b"\0"):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler


def free(filler: Path) -> None:
    filler.unlink()
