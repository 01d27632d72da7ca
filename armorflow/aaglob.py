"""AppArmor path globs: escaping literal names, matching patterns, writing them into profiles.

Paths in events are literal file names (attacker-controlled: a container can create any
name). Paths in a behaviour model are AppArmor glob *patterns*. Every component crosses
that boundary through this module, so a literal ``*`` in a real file name is always
escaped and can never widen a rule.

The pattern language (what a model stores) is AppArmor's, as ``apparmor_parser`` 3.0
reads it inside a quoted string, with every character standing for itself unless it is
one of these operators:

``*``      any run of characters except ``/`` (``**``: any run, ``/`` included).
           A run of stars that is the whole of a path segment (preceded by ``/`` and
           followed by ``/`` or the end) must match at least one character that is not
           ``/``, as the parser compiles it: ``/tmp/*`` does not match ``/tmp/``.
``?``      one character except ``/``.
``[...]``  a character class. Only a plain ASCII subset is accepted (members are
           letters, digits and ``._+=:~%!#$&'();<>|`` plus ranges such as ``a-z``),
           because the parser treats escapes, ``^`` and ``*`` inside classes in ways
           that differ from a shell or Python (``[\\^a]`` compiles as ``[^a]``).
``{a,b}``  alternation of two or more items (the parser refuses ``{a}``), may nest.
``\\c``     the character ``c`` itself, for any ``c``.

Everything else is literal: quotes, spaces, ``^``, ``@``, ``#``, control characters and
non-ASCII text. :func:`to_profile_path` writes a pattern as a profile token that
``apparmor_parser`` reads back as exactly that pattern (see docs/profiles.md for the
measured escaping rules).

Invalid UTF-8: JSON events cannot carry undecodable bytes, so producers replace them with
U+FFFD; a pattern holding U+FFFD names a file the profile cannot spell and the renderer
drops it. In-process callers that still have the raw bytes decode them with
:func:`os.fsdecode` (``surrogateescape``); those lone surrogates U+DC80..U+DCFF are
written back as the exact bytes they stand for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

# Characters that carry meaning in a pattern or in its quoting. ``@`` starts a variable
# (``@{HOME}``) and ``^`` negates a class, so they are escaped too; ``,`` separates
# alternatives; ``"`` ends a quoted token.
GLOB_METACHARS = frozenset('*?[]{}\\^"@,')

#: The replacement character producers put where a name held undecodable bytes.
REPLACEMENT_CHAR = "\ufffd"

#: Class members the pattern language accepts (see the module docstring).
_CLASS_MEMBERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+=:~%!#$&'();<>|"
)
_RANGE_KINDS = ("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789")

#: Literal characters that must carry a backslash in the profile, or apparmor_parser
#: would read them as operators (``@`` before ``{`` would start a variable).
_PROFILE_ESCAPED = frozenset("*?[]{},^@")

#: What may appear in an unquoted profile token; anything else forces quotes. Not ``,``:
#: the lexer ends an unquoted token at ``,,`` (``/{a,,b} r,`` is a syntax error).
_UNQUOTED_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+*?{}[]"
)


#: An absolute path of plain characters only: already a valid, unquoted profile token.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9/._+-]*")


class GlobError(ValueError):
    """A pattern apparmor_parser would refuse, or one this module cannot write safely."""


def escape_literal(piece: str) -> str:
    """Escape a literal path (or piece of one) so that it matches only itself.

    Escaping is per character, so escaping pieces and joining them equals escaping the
    whole name: the classifier escapes the stable parts of a segment around a ``*``.
    """
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


# --- parsing -----------------------------------------------------------------------------

TokenKind = Literal["lit", "star", "dstar", "any", "class", "open", "sep", "close"]


@dataclass(frozen=True, slots=True)
class Token:
    """One element of a parsed pattern.

    ``text`` is the literal character (``lit``), or the class members (``class``);
    ``negated`` is set for ``[^...]``; ``segment`` marks a star run that fills a whole
    path segment (it must match at least one character).
    """

    kind: TokenKind
    text: str = ""
    negated: bool = False
    segment: bool = False


def _parse_class(pattern: str, start: int) -> tuple[Token, int]:
    """Parse ``[...]`` starting after the ``[``; returns the token and the next index."""
    i, n = start, len(pattern)
    negated = i < n and pattern[i] == "^"
    if negated:
        i += 1
    members: list[str] = []
    while i < n and pattern[i] != "]":
        c = pattern[i]
        if c not in _CLASS_MEMBERS:
            raise GlobError(f"character {c!r} is not accepted inside a class")
        if i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            hi = pattern[i + 2]
            kind = next((k for k in _RANGE_KINDS if c in k), None)
            if kind is None or hi not in kind or kind.index(hi) < kind.index(c):
                raise GlobError(f"bad class range {c}-{hi}")
            members.extend(kind[kind.index(c) : kind.index(hi) + 1])
            i += 3
            continue
        members.append(c)
        i += 1
    if i >= n:
        raise GlobError("unclosed character class")
    if not members:
        raise GlobError("empty character class")
    return Token("class", "".join(dict.fromkeys(members)), negated), i + 1


@lru_cache(maxsize=8192)
def parse(pattern: str) -> tuple[Token, ...]:
    """Tokenize a pattern, refusing what apparmor_parser refuses (or reads differently)."""
    out: list[Token] = []
    depth: list[int] = []  # separators seen in each open group
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\x00":
            raise GlobError("NUL in pattern")
        if c == "\\":
            if i + 1 >= n:
                raise GlobError("pattern ends with a lone backslash")
            if pattern[i + 1] == "\x00":
                raise GlobError("NUL in pattern")
            out.append(Token("lit", pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            run = j - i
            after_slash = bool(out) and out[-1] == Token("lit", "/")
            # The parser looks at the characters as written, and a ``/`` is always
            # written plain, so an escaped slash after the run counts as one too.
            rest = pattern[j : j + 2]
            segment = after_slash and (rest == "" or rest[0] == "/" or rest == "\\/")
            for k in range(run // 2):
                out.append(Token("dstar", segment=segment and k == 0))
            if run % 2:
                out.append(Token("star", segment=segment and run == 1))
            i = j
            continue
        if c == "?":
            out.append(Token("any"))
        elif c == "[":
            token, i = _parse_class(pattern, i + 1)
            out.append(token)
            continue
        elif c == "]":
            raise GlobError("']' without '['")
        elif c == "{":
            depth.append(0)
            out.append(Token("open"))
        elif c == "," and depth:
            depth[-1] += 1
            out.append(Token("sep"))
        elif c == "}":
            if not depth:
                raise GlobError("'}' without '{'")
            if depth.pop() == 0:
                raise GlobError("an alternation needs two or more items")
            out.append(Token("close"))
        else:
            out.append(Token("lit", c))
        i += 1
    if depth:
        raise GlobError("unclosed '{'")
    _check_empty_ways(out)
    return tuple(out)


def _check_empty_ways(tokens: list[Token]) -> None:
    """Refuse an alternation with more than one way to match the empty string.

    apparmor_parser 3.0.8 never returns on some of them (``{,,,}``, ``{,,{,,a}}``,
    ``{{,},{,}}``: four or more empty ways); one way (``{a,}``) is all a pattern needs.
    """
    # Per open group: [empty ways of the finished items, ways of the current item,
    # whether the current item holds something that is not an empty-matching group].
    stack: list[list[int]] = []
    for t in tokens:
        if t.kind == "open":
            stack.append([0, 1, 0])
        elif t.kind in ("sep", "close"):
            group = stack[-1]
            if not group[2]:
                group[0] += group[1]
            group[1], group[2] = 1, 0
            if t.kind == "close":
                ways = stack.pop()[0]
                if ways > 1:
                    raise GlobError("an alternation with more than one way to match nothing")
                if stack:
                    if ways:
                        stack[-1][1] *= ways
                    else:
                        stack[-1][2] = 1
        elif stack:
            stack[-1][2] = 1


def validate(pattern: str) -> None:
    """Raise :class:`GlobError` unless the pattern is well formed."""
    parse(pattern)


# --- matching ------------------------------------------------------------------------------


def _token_regex(token: Token) -> str:
    if token.kind == "lit":
        return re.escape(token.text)
    if token.kind == "star":
        return "[^/][^/]*" if token.segment else "[^/]*"
    if token.kind == "dstar":
        return "[^/].*" if token.segment else ".*"
    if token.kind == "any":
        return "[^/]"
    if token.kind == "class":
        body = "".join(re.escape(m) for m in token.text)
        return f"[{'^' if token.negated else ''}{body}]"
    return {"open": "(?:", "sep": "|", "close": ")"}[token.kind]


@lru_cache(maxsize=4096)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Translate an AppArmor path glob to a regular expression (full match).

    Raises :class:`GlobError` for a malformed pattern. AppArmor matches bytes: ``?`` and
    a class take one byte, here one character, so they differ only on non-ASCII names.
    """
    return re.compile("".join(_token_regex(t) for t in parse(pattern)) + r"\Z", re.DOTALL)


def matches(pattern: str, path: str) -> bool:
    """True when the AppArmor glob ``pattern`` matches the literal ``path``."""
    return glob_to_regex(pattern).match(path) is not None


# --- writing into a profile -------------------------------------------------------------


def _literal_bytes(c: str) -> bytes:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the raw byte it stands for
        return bytes([code - 0xDC00])
    if 0xD800 <= code <= 0xDFFF:
        raise GlobError(f"lone surrogate U+{code:04X} stands for no byte")
    return c.encode("utf-8")


def _profile_literal(c: str) -> str:
    if c == "\\":
        # Never ``\\``: apparmor_parser's lexer takes the longest quoted string, so a
        # token ending in ``\\"`` would run on into the next quoted rule. ``\x5c`` is
        # read as an escaped (literal) backslash.
        return "\\x5c"
    if c in _PROFILE_ESCAPED:
        return "\\" + c
    if c == '"':
        return '\\"'
    if " " <= c <= "~":
        return c
    # Control characters, DEL and non-ASCII: hex escapes keep the profile plain ASCII
    # and one rule per line; the parser turns them back into the exact bytes.
    return "".join(f"\\x{b:02x}" for b in _literal_bytes(c))


def to_profile_path(pattern: str) -> str:
    """Write a pattern as a profile token that apparmor_parser reads back unchanged.

    The token is quoted unless it consists of plain characters and operators only.
    Raises :class:`GlobError` for a malformed pattern or one that is not absolute.
    """
    if _PLAIN_PATH.fullmatch(pattern):
        return pattern  # the common case: nothing to escape, nothing to check
    tokens = parse(pattern)
    if not tokens or tokens[0] != Token("lit", "/"):
        raise GlobError("path pattern must start with '/'")
    parts: list[str] = []
    for t in tokens:
        if t.kind == "lit":
            parts.append(_profile_literal(t.text))
        elif t.kind == "star":
            parts.append("*")
        elif t.kind == "dstar":
            parts.append("**")
        elif t.kind == "any":
            parts.append("?")
        elif t.kind == "class":
            parts.append(f"[{'^' if t.negated else ''}{t.text}]")
        else:
            parts.append({"open": "{", "sep": ",", "close": "}"}[t.kind])
    text = "".join(parts)
    if all(c in _UNQUOTED_SAFE for c in text):
        return text
    return f'"{text}"'
