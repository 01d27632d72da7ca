"""One way for a test to wait for something that happens elsewhere (a broker, a worker,
a subprocess): poll a probe until it returns something truthy, fail with what was awaited."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0, *,
             interval_s: float = 0.1, proc: subprocess.Popen[bytes] | None = None) -> T:
    """The first truthy value of ``probe()``; fails the test after ``timeout_s``, or at
    once when ``proc`` (the process that should make it happen) has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)
