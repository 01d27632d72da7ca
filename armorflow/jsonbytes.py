"""JSON bytes that are kept, not just sent.

The object ``orjson.dumps`` returns keeps its output buffer's heap allocation: about 4 KB
of resident memory for a 20-byte table key, 8 KB for a 300-byte line (orjson 3.13,
measured with VmRSS; ``sys.getsizeof`` does not show it). That is harmless for a message
sent and dropped, and costly for what stays in memory by the thousand: the pipeline's
table keys and rows, ``armorflow record``'s sort buffer. :func:`dumps_kept` returns a copy
that holds just its bytes.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps_kept(obj: Any, option: int = 0) -> bytes:
    """``orjson.dumps(obj, option=option)`` as a compact object, for values kept long."""
    return bytes(memoryview(orjson.dumps(obj, option=option)))
