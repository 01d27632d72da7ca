"""Pace aiokafka's fetch loop against brokers that answer an empty fetch at once.

A Kafka broker holds a fetch that finds no new records until ``fetch.max.wait.ms`` has
passed (a long poll), so a caught-up consumer sends about two requests a second. The
embedded broker (noida-db 0.2.3) answers at once instead, and aiokafka's fetch loop, which
relies on the long poll, then sends the next request immediately: measured here, an idle
consumer of one partition sent 19,000 fetches in 3 s and used 88% of a core. In a Faust
worker that loop runs in the consumer thread and takes CPU and the GIL from the thread
that processes the events.

:func:`install` wraps aiokafka's per-node fetch so that a fetch that brought nothing waits
out the rest of the fetch's max wait (capped at :data:`MAX_PAUSE_S`) before the loop may
send the next one. Against Kafka the wait has already been spent in the broker, so the
pause is zero; only an early empty answer is slowed down. A fetch that brought records is
never delayed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiokafka.consumer import fetcher as _fetcher

#: Longest pause after an early empty fetch: bounds the added latency for new records.
MAX_PAUSE_S: Final = 0.1

_FetchRequest = Callable[[Any, Any, int, Any], Awaitable[bool]]
_installed: dict[str, _FetchRequest] = {}
_lock = threading.Lock()


def install() -> None:
    """Wrap ``Fetcher._proc_fetch_request`` (idempotent; process-wide)."""
    with _lock:
        if "original" not in _installed:
            _wrap()


def _wrap() -> None:
    original: _FetchRequest = _fetcher.Fetcher._proc_fetch_request
    _installed["original"] = original

    async def paced(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
        started = time.monotonic()
        got_records = await original(self, assignment, node_id, request)
        if not got_records:
            max_wait_s = self._fetch_max_wait_ms / 1000
            left = min(max_wait_s, MAX_PAUSE_S) - (time.monotonic() - started)
            if left > 0:
                try:
                    await asyncio.sleep(left)
                except asyncio.CancelledError:
                    # As the wrapped fetch does: closing or losing the assignment
                    # cancels it, and the fetch loop expects a plain result.
                    return False
        return got_records

    _fetcher.Fetcher._proc_fetch_request = paced


def uninstall() -> None:
    """Restore aiokafka's own fetch (for comparisons and tests)."""
    with _lock:
        original = _installed.pop("original", None)
        if original is not None:
            _fetcher.Fetcher._proc_fetch_request = original


def installed() -> bool:
    return "original" in _installed
