"""Split one path segment into character classes, atoms and candidate random spans.

The model never sees a whole path: it ranks *spans* of one segment (``php04Ha0a`` ->
``04Ha0a``) so that the stable prefix and suffix around a random part survive. Spans
start and end only at boundaries where a generator could plausibly have glued random
characters to a fixed name, which keeps the candidate list short.
"""

from __future__ import annotations

import re
from collections.abc import Callable

DIGIT, LOWER, UPPER, DELIM, OTHER = 0, 1, 2, 3, 4

#: Characters that separate words inside a file name.
DELIMS = frozenset(".-_+~:,@ =")

#: Random parts shorter than this are never proposed: one or two characters cannot be
#: told apart from a version number or an abbreviation.
MIN_SPAN = 4
#: Past this many boundaries (long names full of class changes, possibly crafted by the
#: workload) only delimiter boundaries are kept, so the span count stays bounded.
MAX_BOUNDS = 24


def char_class(c: str) -> int:
    if "0" <= c <= "9":
        return DIGIT
    if "a" <= c <= "z":
        return LOWER
    if "A" <= c <= "Z":
        return UPPER
    if c in DELIMS:
        return DELIM
    return OTHER


def classes(s: str) -> list[int]:
    return [char_class(c) for c in s]


_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")


def alnum_runs(s: str) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of ASCII letters and digits."""
    return [m.span() for m in _ALNUM_RUN.finditer(s)]


def atoms(word: str) -> list[str]:
    """Split an alphanumeric word where letters and digits meet (``python3`` -> python, 3)."""
    out: list[str] = []
    start = 0
    for i in range(1, len(word)):
        if word[i].isdigit() != word[i - 1].isdigit():
            out.append(word[start:i])
            start = i
    if word:
        out.append(word[start:])
    return out


def boundaries(s: str, is_word: Callable[[str], bool]) -> list[int]:
    """Positions where a random span may start or end.

    Class changes (delimiter/alnum, letter/digit, lower->upper) plus the ends of known
    words at the start of a run (``umount`` in ``umount1404256428``, ``tmp`` in
    ``tmpk3j_x9a1``), because generators append random text right after a fixed prefix.
    """
    n = len(s)
    cls = classes(s)
    out = {0, n}
    for i in range(1, n):
        a, b = cls[i - 1], cls[i]
        if a == b:
            continue
        if a in (DELIM, DIGIT) or b in (DELIM, DIGIT) or (a == LOWER and b == UPPER):
            out.add(i)
    for start, end in alnum_runs(s):
        if end - start < 5:
            continue
        low = s[start:end].lower()
        for k in range(2, min(end - start, 24)):
            if is_word(low[:k]):
                out.add(start + k)
    bounds = sorted(out)
    if len(bounds) > MAX_BOUNDS:
        coarse = [i for i in bounds if i in (0, n) or cls[i - 1] == DELIM or cls[i] == DELIM]
        bounds = coarse if len(coarse) <= MAX_BOUNDS else [0, n]
    return bounds


def candidate_spans(s: str, is_word: Callable[[str], bool]) -> list[tuple[int, int]]:
    """Every (start, end) span that starts and ends on an alphanumeric character."""
    bounds = boundaries(s, is_word)
    n = len(s)
    spans: list[tuple[int, int]] = []
    for a_i, i in enumerate(bounds):
        if i >= n or (char_class(s[i]) == DELIM and not _glued_underscore(s, i)):
            continue
        for j in bounds[a_i + 1 :]:
            if s[j - 1] == ".":
                break  # no generator puts a dot inside its random part; extensions stay
            if j - i < MIN_SPAN:
                continue
            if char_class(s[j - 1]) == DELIM and not _glued_underscore(s, j - 1):
                continue
            spans.append((i, j))
    return spans


def _glued_underscore(s: str, k: int) -> bool:
    """An ``_`` between alphanumerics may be a random character (Python's tempfile uses it)."""
    return (
        s[k] == "_"
        and (k == 0 or s[k - 1].isalnum())
        and (k + 1 == len(s) or s[k + 1].isalnum())
    )
