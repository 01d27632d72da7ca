"""Sibling collapse: many numbered children of one directory become one glob.

``/var/cache/nginx/client_temp/0000000001`` ... ``0000000042`` are each plausible stable
names (a counter, zero-padded, no randomness for the model to see), but a directory that
keeps producing new ones is a counter, not a set of files. Only digit runs may vary, so
``libfoo.so.1`` / ``libbar.so.1`` are never merged.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from armorflow.aaglob import escape_literal, has_wildcard, unescape_literal

DEFAULT_THRESHOLD = 10
#: Threshold in a directory the workload writes files in: names it generates itself
#: (``job0001``, ``job0002``...) are a counter after a few, while numbered names it only
#: reads (``man1`` ... ``man9``) are a fixed set the image ships.
CREATED_THRESHOLD = 3
_DIGITS = re.compile(r"\d+")


def _shape(literal: str) -> str:
    """The name with every digit run reduced to ``0``: counters share one shape."""
    return _DIGITS.sub("0", literal)


def _merge(values: list[str]) -> str:
    """Common literal prefix and suffix around the varying digits, as a glob."""
    first = values[0]
    pre = len(first)
    suf = len(first)
    for v in values[1:]:
        k = 0
        while k < min(pre, len(v)) and v[k] == first[k]:
            k += 1
        pre = k
        k = 0
        while k < min(suf, len(v)) and v[-1 - k] == first[-1 - k]:
            k += 1
        suf = k
    prefix = first[:pre]
    suffix = first[len(first) - suf :] if suf else ""
    # Digits never stay in the kept parts next to the varying run: ``000000000*`` would
    # miss the tenth file (``0000000010``).
    prefix = prefix.rstrip("0123456789")
    suffix = suffix.lstrip("0123456789")
    if len(prefix) + len(suffix) > min(len(v) for v in values):
        return ""  # overlapping affixes: no single varying region; leave as is
    return escape_literal(prefix) + "*" + escape_literal(suffix)


def collapse_siblings(
    patterns: Iterable[str],
    threshold: int = DEFAULT_THRESHOLD,
    *,
    created_dirs: frozenset[str] = frozenset(),
    created_threshold: int = CREATED_THRESHOLD,
) -> dict[str, str]:
    """Map each pattern to its sibling-collapsed form (unchanged when nothing applies).

    Works bottom-up one path depth at a time, so ``.../client_temp/0000000001/x`` and
    ``.../client_temp/0000000002/x`` merge on the numbered directory too. Children of a
    directory in ``created_dirs`` (patterns of directories the workload writes files in)
    merge from ``created_threshold`` siblings on.
    """
    originals = list(dict.fromkeys(patterns))
    current = {p: p.split("/") for p in originals}
    depth = max((len(s) for s in current.values()), default=0)
    for i in range(depth - 1, 0, -1):
        groups: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for segs in current.values():
            if len(segs) <= i or not segs[i] or has_wildcard(segs[i]):
                continue
            literal = unescape_literal(segs[i])
            if not any(c.isdigit() for c in literal):
                continue
            key = ("/".join(segs[:i]), "/".join(segs[i + 1 :]), _shape(literal))
            groups[key].add(literal)
        merged: dict[tuple[str, str, str], str] = {}
        for key, values in groups.items():
            needed = threshold
            if key[0] in created_dirs and not key[1]:
                needed = min(threshold, created_threshold)
            if len(values) >= needed:
                glob = _merge(sorted(values))
                if glob:
                    merged[key] = glob
        if not merged:
            continue
        for segs in current.values():
            if len(segs) <= i or not segs[i] or has_wildcard(segs[i]):
                continue
            literal = unescape_literal(segs[i])
            key = ("/".join(segs[:i]), "/".join(segs[i + 1 :]), _shape(literal))
            if key in merged:
                segs[i] = merged[key]
    return {p: "/".join(current[p]) for p in originals}
