"""Stopping a long-running verb: SIGINT and SIGTERM run one callback.

A pod is stopped with SIGTERM and a terminal with Ctrl-C (SIGINT); every verb that runs
until it is told to stop treats both alike through :func:`on_stop`, and puts the
previous handlers back when it returns, so a verb run inside another (tests, the demo)
leaves the process as it found it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_stop(callback: Callable[[int], None],
            signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Call ``callback(signum)`` on each of ``signals`` while the block runs."""

    def handler(signum: int, frame: object) -> None:
        callback(signum)

    previous: dict[signal.Signals, Any] = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM sets while the block runs (``while not ev.is_set()``)."""
    event = threading.Event()
    with on_stop(lambda _signum: event.set()):
        yield event


def stop_process_group(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the child's process group (started with ``start_new_session``), SIGKILL it
    if it is not gone within ``timeout_s``; nothing if it already exited."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
