"""Evaluate AppArmor file rules in user space: does a profile allow (path, permission)?

The kernel of the benchmark machine has no AppArmor, so ``bench/profile_quality.py``
asks this module instead. It reads a profile the way ``apparmor_parser`` would for the
parts that decide file access, and matches names with the project's own glob matcher
(:func:`armorflow.aaglob.matches`)::

    rules = RuleSet.from_text(Path("web.apparmor").read_text())   # + its #includes
    rules.check("/etc/shadow", "r").allowed                         # False
    rules.check("/var/www/", "r").allowed                           # a directory: '/'

What is read:

- ``#include <x>``, ``include <x>``, ``include if exists <x>`` (relative to
  ``/etc/apparmor.d``) and ``#include "x"`` (relative to the including file); a
  directory includes its files in name order, skipping hidden and backup files;
- variables ``@{NAME}=v1 v2`` and ``@{NAME}+=v3`` (values may be quoted and may use other
  variables); a rule with ``@{NAME}`` stands for one rule per combination of values, and
  the ``//`` a value ending in ``/`` leaves is folded into ``/`` as the parser does;
- file rules ``[audit] [deny] [owner] [file] PATH PERMS [-> TARGET],``, the same with the
  permissions first (``owner mrixwlk @{HOME}/x,``), and ``[owner] link [subset] PATH ->
  TARGET,``. Everything else (capability, network, signal, ptrace, unix, dbus, mount,
  ``abi``, profile headers and braces) is skipped: it does not decide file access.

Names: a token may be quoted; inside it ``\\xHH`` is that byte (an operator character
written so is a literal), ``\\NNN`` an octal byte, ``\\t``/``\\n``/``\\r`` those
characters, ``\\c`` for an operator ``c`` (``*?[]{},^@\\"``) the literal ``c``, ``\\c``
for any other character ``c`` itself. ``\\@{`` is no variable. This is what
:func:`armorflow.aaglob.to_profile_path` writes and what the parser reads (see
docs/profiles.md). The result is an :mod:`armorflow.aaglob` pattern (literal operators
backslash-escaped), so alternations ``{a,b}``, ``*``, ``**``, ``?`` and classes mean
what they mean to the parser, and a directory, whose name ends in ``/``, is matched only
by a pattern that ends in ``/`` (or by ``**``).

Permissions: the letters ``r w a m l k`` as written, and ``x`` for any execute mode
(``ix``, ``px``, ``Px``, ``ux``, ``cx``, ``pix``...). A request for ``a`` (append) is
granted by ``w`` too. ``owner`` rules apply only when the caller says the task owns the
file. A ``deny`` rule that matches takes the letter away whatever allows it. A hard link
(``l``) is allowed by a ``link`` rule whose name and target both match, or by a file rule
granting ``l`` on the new name (AppArmor then also checks that the link grants no more
than the target does; this evaluator does not). One statement per line: that is how both
the renderer and Debian's abstractions write them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from armorflow.aaglob import GlobError, escape_literal, matches

#: Where ``#include <...>`` names are looked up.
APPARMOR_DIR: Final = Path("/etc/apparmor.d")

#: Characters that are operators in a profile name; written ``\c`` they are literals.
_OPERATORS: Final = frozenset('*?[]{},^@\\"')
_QUALIFIERS: Final = frozenset({"audit", "deny", "owner", "allow", "quiet", "kill"})
_PERM_CHARS: Final = frozenset("rwaxlkmiupcUPC")
_VARIABLE: Final = re.compile(r"@\{([A-Za-z0-9_]+)\}")
_ASSIGN: Final = re.compile(r"^(@\{[A-Za-z0-9_]+\})\s*(\+?=)\s*(.*)$")
_INCLUDE: Final = re.compile(r'^#?include\s+(if\s+exists\s+)?(<[^>]+>|"[^"]+")\s*$')
_SLASHES: Final = re.compile(r"/{2,}")
_BACKUP: Final = re.compile(r"(~|\.dpkg-\w+|\.rpm\w+|\.orig|\.rej)$")


class RuleError(ValueError):
    """A profile this evaluator cannot read (an include that is missing, a bad variable)."""


@dataclass(frozen=True, slots=True)
class FileRule:
    """One file rule after variable expansion: ``pattern`` is an aaglob pattern."""

    pattern: str
    perms: frozenset[str]
    owner: bool = False
    deny: bool = False
    #: For ``link`` rules: the target pattern (``perms`` is then ``{"l"}``).
    link_target: str | None = None
    #: Where it was written: ``file:line``.
    source: str = ""

    def applies(self, path: str, owner: bool) -> bool:
        """Whether the rule's name (and owner condition) covers ``path``."""
        if self.owner and not owner:
            return False
        try:
            return matches(self.pattern, path)
        except GlobError:
            return False


@dataclass(frozen=True, slots=True)
class Check:
    """The answer for one (path, permissions) request."""

    allowed: bool
    #: Letters no rule grants (or a deny rule takes away).
    missing: str = ""
    #: The rules that granted each granted letter (``source`` of the first match).
    granted_by: tuple[str, ...] = ()


@dataclass
class _Raw:
    """A file rule as written, before variables are expanded."""

    path: str
    perms: frozenset[str]
    owner: bool
    deny: bool
    target: str | None
    source: str


def parse_perms(text: str) -> frozenset[str]:
    """Rule letters to request letters: ``r w a m l k`` as they are, execute modes to ``x``."""
    if not text or any(c not in _PERM_CHARS for c in text):
        raise RuleError(f"not a permission string: {text!r}")
    out = {c for c in text if c in "rwamlk"}
    if any(c in text for c in "xX"):
        out.add("x")
    return frozenset(out)


def _looks_like_perms(token: str) -> bool:
    return bool(token) and all(c in _PERM_CHARS for c in token)


def _looks_like_path(token: str) -> bool:
    return token.startswith(("/", "@{", '"/', '"@{'))


def _split_tokens(statement: str) -> list[str]:
    """Whitespace-separated tokens, a quoted token kept whole with its quotes."""
    tokens: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(statement):
        c = statement[i]
        if quoted:
            cur.append(c)
            if c == "\\" and i + 1 < len(statement):
                cur.append(statement[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
            cur.append(c)
        elif c.isspace():
            if cur:
                tokens.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        tokens.append("".join(cur))
    return tokens


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` inside quotes is text)."""
    quoted = False
    escaped = False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == "#" and not quoted:
            return line[:i]
    return line


def _unquote(token: str) -> str:
    """The text of a token without its surrounding quotes (escapes still in place)."""
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        return token[1:-1]
    return token


def decode_name(raw: str) -> str:
    """A profile name (quotes removed, variables expanded) as an aaglob pattern.

    Escapes become literal characters (escaped for aaglob when they are operators);
    unescaped operators stay operators.
    """
    out: list[str] = []
    pending = bytearray()

    def flush() -> None:
        if pending:
            out.append(escape_literal(bytes(pending).decode("utf-8", "surrogateescape")))
            pending.clear()

    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c != "\\":
            if c in _OPERATORS:
                flush()
                out.append(c)
            else:
                pending.extend(c.encode("utf-8", "surrogateescape"))
            i += 1
            continue
        if i + 1 >= n:
            raise RuleError(f"name ends with a lone backslash: {raw!r}")
        nxt = raw[i + 1]
        if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", raw[i + 2 : i + 4]):
            pending.append(int(raw[i + 2 : i + 4], 16))
            i += 4
        elif nxt in "01234567" and re.fullmatch(r"[0-7]{3}", raw[i + 1 : i + 4]):
            pending.append(int(raw[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        elif nxt in "tnr":
            pending.extend({"t": b"\t", "n": b"\n", "r": b"\r"}[nxt])
            i += 2
        else:
            pending.extend(nxt.encode("utf-8", "surrogateescape"))
            i += 2
    flush()
    return "".join(out)


@dataclass
class RuleSet:
    """The file rules of a profile and of everything it includes."""

    rules: list[FileRule] = field(default_factory=list)
    variables: dict[str, list[str]] = field(default_factory=dict)
    #: Rules left out, with the reason (an undefined variable, a malformed name).
    skipped: list[str] = field(default_factory=list)

    # --- reading ---------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, *, source: str = "<profile>",
                  base_dir: Path = APPARMOR_DIR) -> RuleSet:
        """Read a profile's text, following its includes below ``base_dir``."""
        rs = cls()
        raws: list[_Raw] = []
        rs._read(text, source, base_dir, Path.cwd(), raws, set())
        rs._expand(raws)
        return rs

    @classmethod
    def from_file(cls, path: Path, *, base_dir: Path = APPARMOR_DIR) -> RuleSet:
        """Read a profile file, following its includes below ``base_dir``."""
        rs = cls()
        raws: list[_Raw] = []
        rs._read(path.read_text(encoding="utf-8"), str(path), base_dir, path.parent, raws,
                 {path.resolve()})
        rs._expand(raws)
        return rs

    def _include(self, spec: str, optional: bool, base_dir: Path, here: Path,
                 raws: list[_Raw], seen: set[Path]) -> None:
        target = base_dir / spec[1:-1] if spec.startswith("<") else here / spec[1:-1]
        if not target.exists():
            if optional:
                return
            raise RuleError(f"include {spec}: {target} does not exist")
        files = ([p for p in sorted(target.iterdir())
                  if p.is_file() and not p.name.startswith(".") and not _BACKUP.search(p.name)]
                 if target.is_dir() else [target])
        for f in files:
            key = f.resolve()
            if key in seen:  # the parser includes a file once per profile
                continue
            seen.add(key)
            self._read(f.read_text(encoding="utf-8"), str(f), base_dir, f.parent, raws, seen)

    def _read(self, text: str, source: str, base_dir: Path, here: Path, raws: list[_Raw],
              seen: set[Path]) -> None:
        for lineno, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            inc = _INCLUDE.match(stripped)
            if inc:
                self._include(inc.group(2), bool(inc.group(1)), base_dir, here, raws, seen)
                continue
            stripped = _strip_comment(stripped).strip()
            if not stripped:
                continue
            assign = _ASSIGN.match(stripped)
            if assign:
                name = assign.group(1)[2:-1]
                values = [_unquote(t) for t in _split_tokens(assign.group(3).rstrip(","))]
                if assign.group(2) == "=":
                    self.variables[name] = values
                else:
                    self.variables.setdefault(name, []).extend(values)
                continue
            if stripped.endswith("{") or stripped == "}" or not stripped.endswith(","):
                continue  # profile and block headers, closing braces
            raw = self._statement(stripped[:-1].strip(), f"{source}:{lineno}")
            if raw is not None:
                raws.append(raw)

    @staticmethod
    def _statement(statement: str, where: str) -> _Raw | None:
        tokens = _split_tokens(statement)
        quals: set[str] = set()
        while tokens and tokens[0] in _QUALIFIERS:
            quals.add(tokens.pop(0))
        if tokens and tokens[0] == "file":
            tokens.pop(0)
        if not tokens:
            return None
        owner, deny = "owner" in quals, "deny" in quals
        if tokens[0] == "link":
            rest = [t for t in tokens[1:] if t != "subset"]
            if len(rest) == 3 and rest[1] == "->":
                return _Raw(rest[0], frozenset("l"), owner, deny, rest[2], where)
            return None
        if len(tokens) >= 2 and _looks_like_path(tokens[0]) and _looks_like_perms(tokens[1]):
            path, perms = tokens[0], tokens[1]
        elif len(tokens) >= 2 and _looks_like_perms(tokens[0]) and _looks_like_path(tokens[1]):
            perms, path = tokens[0], tokens[1]
        else:
            return None  # not a file rule
        return _Raw(path, parse_perms(perms), owner, deny, None, where)

    def expand(self, raw: str) -> list[str]:
        """All the texts a name stands for once its variables are replaced."""
        found = _VARIABLE.search(raw)
        while found and found.start() > 0 and raw[found.start() - 1] == "\\":
            found = _VARIABLE.search(raw, found.end())
        if not found:
            return [raw]
        name = found.group(1)
        if name not in self.variables:
            raise RuleError(f"undefined variable @{{{name}}}")
        out: list[str] = []
        for value in self.variables[name]:
            out.extend(self.expand(raw[: found.start()] + value + raw[found.end():]))
        return list(dict.fromkeys(out))

    def _names(self, token: str) -> list[str]:
        return [_SLASHES.sub("/", decode_name(text)) for text in self.expand(_unquote(token))]

    def _expand(self, raws: list[_Raw]) -> None:
        for raw in raws:
            try:
                paths = self._names(raw.path)
                targets: list[str | None] = (list(self._names(raw.target))
                                             if raw.target is not None else [None])
            except RuleError as exc:
                self.skipped.append(f"{raw.source}: {exc}")
                continue
            for path, target in itertools.product(paths, targets):
                self.rules.append(FileRule(path, raw.perms, raw.owner, raw.deny, target,
                                           raw.source))

    # --- asking ----------------------------------------------------------------------

    def matching(self, path: str, owner: bool = True) -> Iterator[FileRule]:
        """The rules whose name covers ``path`` (link rules included)."""
        return (r for r in self.rules if r.applies(path, owner))

    def check(self, path: str, perms: str, *, owner: bool = True,
              target: str | None = None) -> Check:
        """Whether every letter of ``perms`` is granted on ``path``.

        ``owner``: the task owns the file (``owner`` rules apply). ``target``: for ``l``,
        the file the new name links to (without it, any ``link`` rule for the name does).
        """
        candidates = list(self.matching(path, owner))
        missing: list[str] = []
        granted: list[str] = []
        for letter in dict.fromkeys(perms):
            if any(r.deny and _grants(r, letter, target) for r in candidates):
                missing.append(letter)
                continue
            by = next((r for r in candidates if not r.deny and _grants(r, letter, target)), None)
            if by is None:
                missing.append(letter)
            else:
                granted.append(by.source)
        return Check(not missing, "".join(missing), tuple(granted))

    def allows(self, path: str, perms: str, *, owner: bool = True,
               target: str | None = None) -> bool:
        """Shorthand for ``check(...).allowed``."""
        return self.check(path, perms, owner=owner, target=target).allowed


def _grants(rule: FileRule, letter: str, target: str | None) -> bool:
    if rule.link_target is not None:
        if letter != "l":
            return False
        return target is None or matches(rule.link_target, target)
    if letter == "a":
        return "a" in rule.perms or "w" in rule.perms
    return letter in rule.perms


def rules_in(paths: Iterable[Path]) -> RuleSet:
    """One rule set from several profile files (their rules together)."""
    out = RuleSet()
    for path in paths:
        part = RuleSet.from_file(path)
        out.rules.extend(part.rules)
        out.skipped.extend(part.skipped)
        out.variables.update(part.variables)
    return out
