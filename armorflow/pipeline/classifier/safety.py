"""Safety policy: the places where a glob may never widen a permission.

A process inside a modeled container chooses its file names. If it writes
``/etc/xK3j9qLm2`` during modeling and the classifier turns that into ``/etc/*``, the
profile would let it write ``/etc/shadow``. Whatever the classifier, the sibling collapse
or a learned pattern propose, a glob that :func:`refusal` refuses for a rule's
permissions is not used: the rule keeps its literal path (docs/classifier.md, "Safety
policy", holds the same table for review).

Permission letters are the model's file permissions (``rwamlk``) plus ``x`` for exec
rules. A literal pattern (no wildcard) is never refused: it names exactly what was seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from armorflow.aaglob import GlobError, has_wildcard, matches, parse, unescape_literal

#: Letters that change a file or what a name points to: write, append, link.
WRITE: Final = frozenset("wal")
#: Letters that run code from a file: exec (``ix`` rules) and mmap with PROT_EXEC.
EXEC: Final = frozenset("xm")
#: Every letter a rule can carry.
EVERY: Final = frozenset("rwamlkx")
#: What the way in checks before the permissions of an entry are known.
ANY_PERMS: Final = "".join(sorted(EVERY))

#: Parents under /proc whose ``*`` children are the documented pid/tid/fd conventions
#: (``rules.proc_rule``): the workload's own processes and descriptors.
_PROC_DOCUMENTED_PARENTS: Final = frozenset(
    {"proc", "task", "fd", "fdinfo", "children", "map_files"}
)
#: The one documented /sys glob (device topology differs per node).
SYS_DEVICES_GLOB: Final = "/sys/devices/**"

Where = Literal["places", "names", "files", "root", "sys", "sys-devices", "proc"]


@dataclass(frozen=True)
class SafetyRule:
    """One row of the policy table."""

    name: str
    #: How the rule finds its place: directory ``places``, directory ``names`` anywhere
    #: in a path, ``files`` the glob can name, or one of the structural checks (``root``,
    #: ``sys``, ``proc``).
    where: Where
    #: The directories (``places``: absolute paths; ``names``: one path segment each;
    #: ``files``: absolute file paths).
    dirs: tuple[str, ...]
    #: Permission letters a glob reaching the place may never carry.
    refuses: frozenset[str]
    why: str


_SYSTEM_DIRS: Final = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/boot")

#: Files whose reading alone is a leak. A read glob may be fine in /etc (the reads are not
#: generalised by the content rules there, but a random name read in /etc would become
#: ``/etc/*``), never one that can name these.
SECRET_FILES: Final = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
    "/etc/security/opasswd", "/etc/ssl/private/server.key", "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/pki/ca.key", "/var/lib/kubelet/pki/kubelet-client-current.pem",
    "/run/secrets/kubernetes.io/serviceaccount/token",
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
)
#: Files in a home directory (``/root``, ``/home/<user>``) that hold passwords, tokens or
#: what was typed.
HOME_SECRET_FILES: Final = (
    ".bash_history", ".zsh_history", ".python_history", ".psql_history", ".mysql_history",
    ".netrc", ".pgpass", ".my.cnf", ".git-credentials",
)

#: The policy, in the order rules are reported (the first that refuses is named).
RULES: Final[tuple[SafetyRule, ...]] = (
    SafetyRule(
        "root-glob", "root", (), EVERY,
        "a wildcard in the first segment (/*, /**, /t*) can name every top-level directory",
    ),
    SafetyRule(
        "sys-glob", "sys", ("/sys",), EVERY,
        "sysfs holds kernel knobs; only the documented /sys/devices/** convention is a glob",
    ),
    SafetyRule(
        "sys-devices-write", "sys-devices", ("/sys/devices",), WRITE | EXEC,
        "/sys/devices/** is for reading device topology; writes there reconfigure devices",
    ),
    SafetyRule(
        "proc-glob", "proc", ("/proc",), EVERY,
        "only the documented pid, tid, fd and map_files positions of /proc become *",
    ),
    SafetyRule(
        "secret-store", "names", (".ssh", ".gnupg", ".aws", ".kube", ".docker", ".azure"),
        EVERY,
        "private keys and cloud/cluster credentials: even reading a file not seen is a leak",
    ),
    SafetyRule(
        "system-exec", "places", (*_SYSTEM_DIRS, "/etc"), EXEC,
        "system binaries, libraries and scripts: a new name there must not become runnable",
    ),
    SafetyRule(
        "system-write", "places", (*_SYSTEM_DIRS, "/etc"), WRITE,
        "system software and configuration (/etc/shadow, /etc/ld.so.preload, /usr/bin/...)",
    ),
    SafetyRule(
        "home-write", "places", ("/root", "/home"), WRITE,
        "home directories hold shell start-up files, keys and tokens",
    ),
    SafetyRule(
        "kubernetes-secrets-write", "places",
        ("/var/lib/kubelet", "/run/secrets", "/var/run/secrets"), WRITE,
        "kubelet state and mounted service-account tokens and secrets",
    ),
    SafetyRule(
        "secret-files", "files", SECRET_FILES, EVERY,
        "password hashes, cluster and kubelet keys, service-account tokens, and a home's"
        " histories and password files: a glob that can name one leaks it",
    ),
)

RULES_BY_NAME: Final = {rule.name: rule for rule in RULES}


# --- where a glob reaches ----------------------------------------------------------------


def _segments(pattern: str) -> list[str] | None:
    """The pattern split on its ``/`` separators (escaped ones count: ``\\/`` matches
    ``/``); None when an alternation holds a ``/``, which no per-segment test can bound."""
    out: list[str] = []
    current: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            if pattern[i + 1] == "/":
                if depth:
                    return None
                out.append("".join(current))
                current = []
            else:
                current.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        elif c == "/":
            if depth:
                return None
            out.append("".join(current))
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    out.append("".join(current))
    return out


def _crosses_slash(segment: str) -> bool:
    """A ``**`` in the segment matches across ``/``: anything below may follow."""
    try:
        return any(t.kind == "dstar" for t in parse(segment))
    except GlobError:
        return True  # unreadable: assume the worst


def _could_be(segment: str, name: str) -> bool:
    """The pattern segment can match the directory name ``name``."""
    if not has_wildcard(segment):
        return unescape_literal(segment) == name
    if _crosses_slash(segment):
        return True
    try:
        return matches("/" + segment, "/" + name)
    except GlobError:
        return True


def _reaches_place(segs: list[str], place: str) -> bool:
    """The glob can name ``place``, a path below it, or one of its ancestors (an
    ancestor renamed or replaced takes the place with it)."""
    wanted = place.split("/")[1:]
    for seg, name in zip(segs[1:], wanted, strict=False):
        if _crosses_slash(seg):
            return True
        if not _could_be(seg, name):
            return False
    return True


def _names_dir(segment: str, name: str) -> bool:
    """The segment is the directory ``name`` itself, or a glob that keeps its leading dot
    and can match it (``.*``, ``.ss?``). A bare ``*`` (``/tmp/*/x``) is not counted: a
    ``.ssh`` below a temp directory is nobody's key store."""
    if not has_wildcard(segment):
        return unescape_literal(segment) == name
    return segment.startswith(".") and _could_be(segment, name)


def _proc_glob_documented(segs: list[str]) -> bool:
    """Every wildcard segment of a /proc glob is a bare ``*`` in a documented position."""
    for idx in range(2, len(segs)):
        seg = segs[idx]
        if not has_wildcard(seg):
            continue
        if seg != "*" or has_wildcard(segs[idx - 1]):
            return False
        if segs[idx - 1] not in _PROC_DOCUMENTED_PARENTS:
            return False
    return True


def _secret_candidates(files: tuple[str, ...], segs: list[str]) -> list[str]:
    """``files`` and the home secrets of the home the glob is in (``/root``, or
    ``/home/<user>`` with the user the glob names, ``user`` when that is a glob)."""
    out = list(files) + [f"/root/{name}" for name in HOME_SECRET_FILES]
    if len(segs) > 3 and segs[1] == "home":
        user = segs[2] if not has_wildcard(segs[2]) else "user"
        out += [f"/home/{unescape_literal(user)}/{name}" for name in HOME_SECRET_FILES]
    return out


def _applies(rule: SafetyRule, pattern: str, segs: list[str]) -> bool:
    """The rule's place is one the glob reaches (structural rules: breaks the shape)."""
    if rule.where == "root":
        return not pattern.startswith("/") or len(segs) < 2 or has_wildcard(segs[1])
    if rule.where == "sys":
        return segs[1] == "sys" and pattern != SYS_DEVICES_GLOB
    if rule.where == "sys-devices":
        return pattern == SYS_DEVICES_GLOB
    if rule.where == "proc":
        return segs[1] == "proc" and not _proc_glob_documented(segs)
    if rule.where == "names":
        return any(_names_dir(seg, name) for seg in segs for name in rule.dirs)
    if rule.where == "files":
        return any(matches(pattern, path) for path in _secret_candidates(rule.dirs, segs))
    return any(_reaches_place(segs, place) for place in rule.dirs)


@lru_cache(maxsize=16_384)
def rules_for(pattern: str) -> tuple[SafetyRule, ...]:
    """The rules that restrict ``pattern`` (none for a literal pattern)."""
    if not has_wildcard(pattern):
        return ()
    segs = _segments(pattern)
    if segs is None:
        return (RULES_BY_NAME["root-glob"],)
    if not pattern.startswith("/") or len(segs) < 2 or has_wildcard(segs[1]):
        return (RULES_BY_NAME["root-glob"],)
    return tuple(rule for rule in RULES if _applies(rule, pattern, segs))


def refusal(pattern: str, perms: Iterable[str]) -> SafetyRule | None:
    """The first rule that forbids ``pattern`` to carry any of ``perms``, else None."""
    rules = rules_for(pattern)
    if not rules:
        return None
    letters = set("".join(perms))
    for rule in rules:
        if rule.refuses & letters:
            return rule
    return None


def allows(pattern: str, perms: str) -> bool:
    """``pattern`` may carry ``perms`` (the model's hook, see :class:`SafeCollapse`)."""
    return refusal(pattern, perms) is None


def refused_letters(pattern: str) -> dict[str, str]:
    """Rule name -> the letters it refuses ``pattern`` (for ``--explain``)."""
    return {r.name: "".join(p for p in "rwamlkx" if p in r.refuses) for r in rules_for(pattern)}


def policy_table() -> str:
    """The policy as the Markdown table docs/classifier.md holds (a test compares them)."""
    lines = [
        "| rule | where | refused permissions | why |",
        "| --- | --- | --- | --- |",
    ]
    for rule in RULES:
        letters = "every" if rule.refuses == EVERY else " ".join(
            p for p in "rwamlkx" if p in rule.refuses
        )
        lines.append(f"| `{rule.name}` | {_where_text(rule)} | {letters} | {rule.why} |")
    return "\n".join(lines)


def _where_text(rule: SafetyRule) -> str:
    if rule.where == "root":
        return "a wildcard in the first segment"
    if rule.where == "sys":
        return "`/sys`, except `/sys/devices/**`"
    if rule.where == "sys-devices":
        return "`/sys/devices/**`"
    if rule.where == "proc":
        parents = ", ".join(f"`{p}`" for p in sorted(_PROC_DOCUMENTED_PARENTS))
        return f"`/proc`, except a `*` child of {parents}"
    if rule.where == "names":
        return "any directory named " + ", ".join(f"`{d}`" for d in rule.dirs)
    if rule.where == "files":
        homes = ", ".join(f"`{n}`" for n in HOME_SECRET_FILES)
        return ("a glob that can name " + ", ".join(f"`{f}`" for f in rule.dirs)
                + f", or in `/root` or `/home/<user>`: {homes}")
    return ", ".join(f"`{d}`" for d in rule.dirs)


class SafeCollapse:
    """The classifier's ``collapse`` as the way-in path mapper, carrying the policy as the
    model's ``allows`` hook (armorflow/model.py): the model asks it once it knows the
    entry's permissions, and keeps the literal path when the answer is no.

    ``refused`` counts the refusals per rule (the stage's stats; a refused entry folded
    again is a repeat the model's seen-cache usually skips, so this counts events that
    reached the model, not distinct rules: those are counted at close).
    """

    def __init__(
        self,
        collapse: Callable[[str], str],
        *,
        scoped: Callable[[], Callable[[str], str]] | None = None,
        refused: Counter[str] | None = None,
    ) -> None:
        self._collapse = collapse
        self._scoped = scoped
        self.refused: Counter[str] = Counter() if refused is None else refused

    def __call__(self, literal: str) -> str:
        return self._collapse(literal)

    def scoped(self) -> SafeCollapse:
        """This mapper with classifier state of its own, for one model (the model asks
        for it, see armorflow/model.py); refusals still count here."""
        if self._scoped is None:
            return self
        return SafeCollapse(self._scoped(), refused=self.refused)

    def allows(self, pattern: str, perms: str) -> bool:
        rule = refusal(pattern, perms)
        if rule is None:
            return True
        self.refused[rule.name] += 1
        return False
