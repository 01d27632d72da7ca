"""Read-only content: many files read in one directory or tree become one read rule.

A web server serves a document tree, a compiler reads a project's sources, a job reads a
data directory. Run 2 asks for files run 1 never did, and a profile of exact names would
break it. The names themselves look stable (``index.html``, ``main.c``), so the
classifier rightly keeps them; what shows they are content is the model-level context:
many files read, and only read, below one place.

The generalisation is deliberately narrow (docs/profiles.md, "Read-only content"):

* only rules that are exactly ``r`` (never write, append, link, lock, mmap-exec or exec)
  are generalised, and the glob carries ``r`` alone: a new name can be read, never
  written or run;
* a directory becomes ``DIR/*`` from :data:`FLAT_FILES` files read directly in it; a tree
  becomes ``DIR/**`` from :data:`TREE_FILES` files read in at least :data:`TREE_DIRS`
  directories of it, or from a walk (``DIR/`` listed, :data:`WALK_DIRS` directories
  below it listed and files read in :data:`WALK_DIRS` of the listed ones: an archiver,
  a copy, a VCS adding a work tree), and only two levels below ``/`` or deeper: the
  deepest such tree, or an ancestor of it that qualifies too and has
  :data:`SPANNING_FILES` files read directly in it;
* never where reading a file not seen is a leak or a window on the node: system
  configuration, homes, kernel and device trees, runtime and kubelet state, logs, and
  any directory whose own name or an ancestor's reads like a secret store
  (:func:`refusal`); a tree also never holds such a place or such a directory among
  those read below it (:func:`tree_refusal`). The classifier's safety policy is
  applied on top.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from armorflow.aaglob import escape_literal, has_wildcard, unescape_literal
from armorflow.model import BehaviourModel, FileKey
from armorflow.pipeline.classifier import safety

#: Files read directly in one directory before it becomes ``DIR/*``.
FLAT_FILES: Final = 5
#: Files read below one directory, and the distinct directories they are in, before the
#: tree becomes ``DIR/**``.
TREE_FILES: Final = 10
TREE_DIRS: Final = 3
#: Files read directly in a directory before its tree replaces a narrower tree inside it.
SPANNING_FILES: Final = 2
#: ``DIR/**`` only this many segments below ``/`` or deeper (``/srv/www/**``, never
#: ``/srv/**``).
TREE_MIN_DEPTH: Final = 2
#: Directories below ``DIR`` listed, beside ``DIR/`` itself, for a walk of the tree.
WALK_DIRS: Final = 2

#: Places where a read rule is never generalised, whatever was read there.
REFUSED_PLACES: Final = (
    "/etc", "/root", "/home", "/proc", "/sys", "/dev", "/run", "/var/run", "/boot",
    "/var/lib/kubelet", "/var/log", "/var/lib/containerd", "/var/lib/docker",
    # backups of node files, queues of other users' jobs and mail, node identity stores
    "/var/backups", "/var/spool", "/var/mail", "/var/lib/rpm", "/var/lib/sss",
    "/var/lib/etcd",
    # where a node's own file system is commonly mounted into a container (hostPath)
    "/host", "/hostfs", "/rootfs", "/node", "/mnt/host", "/mnt/root",
)
#: Directory-name words that mark a secret store, matched against a segment's
#: ``.``/``-``/``_``-separated words, case-insensitively.
SECRET_WORDS: Final = frozenset({
    "secret", "secrets", "private", "key", "keys", "keyring", "keystore", "token",
    "tokens", "credential", "credentials", "creds", "password", "passwords", "passwd",
    "shadow", "ssl", "tls", "pki", "certs", "vault", "auth", "ssh", "gnupg", "aws", "kube",
})
_WORDS: Final = re.compile(r"[.\-_]+")
#: Longer secret words also matched inside a word (``mysecrets``, ``apikeys``,
#: ``db_passwords2``); the short ones above only as whole words (``key`` is in
#: ``monkey``, ``auth`` in ``author``).
SECRET_STEMS: Final = ("secret", "private", "keyring", "keystore", "credential", "password",
                       "passwd", "shadow", "gnupg", "apikey")


@dataclass(frozen=True)
class ContentGlob:
    """One generalisation: the glob, and how many read rules it replaced."""

    pattern: str
    files: int
    directories: int
    #: made from a walk of the tree (it and directories below it listed)
    walked: bool = False

    def describe(self) -> str:
        where = (f"in {self.directories} directories" if self.directories > 1
                 else "in one directory")
        walk = ", the tree walked (listed with directories below it)" if self.walked else ""
        return (f"read-only content: {self.files} files read {where}{walk}, generalised "
                "for reading")


def _under(path: str, place: str) -> bool:
    return path == place or path.startswith(place + "/")


def canonical(path: str) -> bool:
    """``path`` (absolute, no trailing slash) has no empty, ``.`` or ``..`` segment: the
    profile compiler folds ``//``, so a refusal by prefix must not be fooled by one."""
    if path == "":
        return True  # the root's own children
    return path.startswith("/") and all(
        part not in ("", ".", "..") for part in path[1:].split("/"))


def refusal(directory: str) -> str | None:
    """Why reads below ``directory`` (a literal absolute path, no trailing slash) may not
    be generalised, or None when they may."""
    if not canonical(directory):
        return "the path is not canonical (an empty, '.' or '..' segment)"
    for place in REFUSED_PLACES:
        if _under(directory, place):
            return f"{place} holds configuration, state or secrets of the node"
    for segment in directory.split("/"):
        words = {w for w in _WORDS.split(segment.lower()) if w}
        if words & SECRET_WORDS or any(stem in segment.lower() for stem in SECRET_STEMS):
            return f"{segment!r} reads like a secret store"
    return None


def tree_refusal(directory: str, seen_dirs: set[str],
                 judge: Callable[[str], str | None] = refusal,
                 places: Iterable[str] = REFUSED_PLACES) -> str | None:
    """Why ``DIR/**`` may not be made, or None: ``judge`` refuses the directory itself, one
    of ``places`` lies inside it (``/var/lib/**`` would reach ``/var/lib/kubelet``), or
    ``judge`` refuses one of the directories seen below it (a secret store)."""
    why = judge(directory)
    if why is not None:
        return why
    for place in places:
        if _under(place, directory):
            return f"{place}, inside it, holds configuration, state or secrets of the node"
    for below in sorted(seen_dirs):
        why = judge(below)
        if why is not None:
            return why
    return None


def _read_only_literals(model: BehaviourModel) -> dict[FileKey, str]:
    """Rules that are exactly ``r`` on one literal name -> that name."""
    return {
        key: unescape_literal(key[0])
        for key, perms in model.files.items()
        if perms == {"r"} and not key[1] and not has_wildcard(key[0])
    }


def _parent(literal: str) -> str:
    return literal.rstrip("/").rpartition("/")[0]


def _ancestors_above(directory: str) -> list[str]:
    """The directories above ``directory``, ``/`` excluded."""
    out = []
    directory = directory.rpartition("/")[0]
    while directory:
        out.append(directory)
        directory = directory.rpartition("/")[0]
    return out


def content_globs(model: BehaviourModel) -> dict[str, ContentGlob]:
    """The globs the model's read-only rules would be generalised to (nothing changed)."""
    reads = _read_only_literals(model)
    files = [name for name in reads.values() if not name.endswith("/")]
    listed = {name.rstrip("/") for name in reads.values() if name.endswith("/")}
    listed_below: dict[str, int] = defaultdict(int)
    for directory in listed:
        for ancestor in _ancestors_above(directory):
            listed_below[ancestor] += 1
    below: dict[str, int] = defaultdict(int)
    dirs_below: dict[str, set[str]] = defaultdict(set)
    directly: dict[str, int] = defaultdict(int)
    for name in files:
        parent = _parent(name)
        directly[parent] += 1
        ancestor = parent
        while ancestor:
            below[ancestor] += 1
            dirs_below[ancestor].add(parent)
            ancestor = ancestor.rpartition("/")[0]
    out: dict[str, ContentGlob] = {}

    # directories a file was read in (also files written too: git checks out what it
    # then reads); the glob itself still carries r alone
    read_in = {_parent(unescape_literal(path)) for (path, _old, _owner), perms
               in model.files.items()
               if "r" in "".join(perms) and not has_wildcard(path) and not path.endswith("/")}
    read_listed: dict[str, int] = defaultdict(int)
    for directory in listed & read_in:
        for ancestor in (directory, *_ancestors_above(directory)):
            read_listed[ancestor] += 1

    def walked(d: str) -> bool:
        # listed, with directories below listed too, and files read in two or more of
        # the listed directories (a walk reads what it finds, not one file)
        return d in listed and listed_below[d] >= WALK_DIRS and read_listed[d] >= WALK_DIRS

    trees = sorted(
        (d for d, n in below.items()
         if ((n >= TREE_FILES and len(dirs_below[d]) >= TREE_DIRS) or walked(d))
         and d.count("/") >= TREE_MIN_DEPTH),
        key=lambda d: -d.count("/"),
    )
    taken: list[str] = []
    for directory in trees:  # deepest first: the narrowest tree that qualifies
        if any(_under(directory, t) for t in taken):
            continue
        inner = [t for t in taken if _under(t, directory)]
        # An ancestor of a tree taken already replaces it only when the content spans
        # it: files were read in the ancestor itself too (gcc reads /usr/include/stdio.h
        # as well as /usr/include/x86_64-linux-gnu/bits/...).
        if inner and directly.get(directory, 0) < SPANNING_FILES:
            continue
        pattern = escape_literal(directory) + "/**"
        # every directory seen below, read in or only listed, is judged for secrets
        seen = dirs_below[directory] | {d for d in listed if _under(d, directory)}
        if tree_refusal(directory, seen) is None and safety.allows(pattern, "r"):
            for t in inner:
                taken.remove(t)
                del out[escape_literal(t) + "/**"]
            taken.append(directory)
            out[pattern] = ContentGlob(pattern, below[directory], len(dirs_below[directory]),
                                       walked=walked(directory))
    for directory, n in sorted(directly.items()):
        if n < FLAT_FILES or not directory or any(_under(directory, t) for t in taken):
            continue
        pattern = escape_literal(directory) + "/*"
        if refusal(directory) is None and safety.allows(pattern, "r"):
            out[pattern] = ContentGlob(pattern, n, 1)
    return out


def _glob_for(literal: str, globs: dict[str, ContentGlob]) -> str | None:
    parent = _parent(literal)
    flat = escape_literal(parent) + "/*"
    if flat in globs and not literal.endswith("/"):
        return flat
    ancestor = parent
    while ancestor:
        tree = escape_literal(ancestor) + "/**"
        if tree in globs:
            return tree
        ancestor = ancestor.rpartition("/")[0]
    return None


def generalise_content(model: BehaviourModel) -> list[ContentGlob]:
    """Replace the read-only rules that :func:`content_globs` covers with their globs
    (``r`` only; ``owner`` when every replaced rule was). Returns what was made."""
    globs = content_globs(model)
    if not globs:
        return []
    reads = _read_only_literals(model)
    owners: dict[str, list[bool]] = defaultdict(list)
    files: dict[FileKey, set[str]] = {}
    for key, perms in model.files.items():
        literal = reads.get(key)
        glob = _glob_for(literal, globs) if literal is not None else None
        if literal is None or glob is None:
            files.setdefault(key, set()).update(perms)
            continue
        owners[glob].append(key[2])
        model.record_example(glob, literal)
    for glob, flags in owners.items():
        files.setdefault((glob, "", all(flags)), set()).add("r")
    model.files = files
    model.remap_provenance()
    return [globs[g] for g in sorted(owners)]
