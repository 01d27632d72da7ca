"""AppArmor path globs: escaping literal names and matching patterns.

Paths in events are literal file names (attacker-controlled: a container can create
any name). Paths in a behaviour model are AppArmor glob *patterns*. Every component
crosses that boundary through this module, so a literal ``*`` in a real file name is
always escaped and can never widen a rule.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Characters that carry meaning in an AppArmor path glob or in its quoting.
# ``@`` starts a variable (``@{HOME}``), ``^`` is a hat separator in some positions.
GLOB_METACHARS = frozenset('*?[]{}\\^"@,')


def escape_literal(piece: str) -> str:
    """Escape a literal path (or piece of one) so that it matches only itself."""
    if not any(c in GLOB_METACHARS for c in piece):
        return piece
    return "".join("\\" + c if c in GLOB_METACHARS else c for c in piece)


def unescape_literal(pattern: str) -> str:
    """Inverse of :func:`escape_literal` for patterns that hold no wildcard."""
    out: list[str] = []
    it = iter(pattern)
    for c in it:
        if c == "\\":
            out.append(next(it, "\\"))
        else:
            out.append(c)
    return "".join(out)


def has_wildcard(pattern: str) -> bool:
    """True when the pattern contains an unescaped glob operator."""
    escaped = False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in "*?[{":
            return True
    return False


@lru_cache(maxsize=4096)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Translate an AppArmor path glob to a regular expression.

    ``*`` matches any run of characters except ``/``, ``**`` any run including ``/``,
    ``?`` one character except ``/``, ``[...]`` a class, ``{a,b}`` an alternation.
    A backslash escapes the next character.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    depth = 0
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^"):
                    body = "^" + body[1:].replace("\\", "\\\\")
                else:
                    body = body.replace("\\", "\\\\")
                out.append(f"[{body}]")
                i = end + 1
                continue
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def matches(pattern: str, path: str) -> bool:
    """True when the AppArmor glob ``pattern`` matches the literal ``path``."""
    return glob_to_regex(pattern).match(path) is not None
