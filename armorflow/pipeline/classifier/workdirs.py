"""Written content: directories a workload fills with files, the names chosen by its input.

A web server stores uploads under the names its clients send, an archiver restores the
names in the archive, a database writes a backup where the job says. The next run
writes other names in the same places, and a profile of exact names denies them. What
shows such a directory is the workload's own work area is model-level context: several
files *written* there, every file below it written by the workload (none only read, run
or mapped executable), and nothing sensitive on the way.

The rule (docs/profiles.md, "Written content"):

* a directory becomes ``DIR/*`` from :data:`FLAT_FILES` files written directly in it; a
  tree becomes ``DIR/**`` from :data:`TREE_FILES` files written below it in at least
  :data:`TREE_DIRS` of its directories (made directories count as a directory written
  in), the deepest such tree; both at least :data:`MIN_DEPTH` segments below ``/``;
* the glob carries the union of the replaced rules' permissions, which may only be
  ``r``, ``w``, ``a`` and ``k``: a new name can be written and read back, never linked,
  mapped executable or run;
* a directory is *blocked* when any rule below it (in it, for ``DIR/*``) would gain a
  permission it never had that matters: a file only read (configuration or input inside
  the work area), a file run or mapped executable that the workload did not write, or a
  glob of either. Widening write onto those would turn a writable work area into a way
  to change what the workload reads or runs;
* never in the places where reads are not generalised either (classifier/content.py:
  node configuration, homes, kernel trees, runtime state, logs, secret-looking
  directories), nor in system trees (``/usr``, ``/bin``, ``/lib``...); and the
  classifier's safety policy is applied on top.

Names are hostile input: they stay literal in the glob (escaped), only the last segment
becomes ``*`` or ``**``, and the evidence is counted on names, not on what they look
like.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Final

from armorflow.aaglob import escape_literal, has_wildcard, unescape_literal
from armorflow.model import BehaviourModel, FileKey
from armorflow.pipeline.classifier import content, safety

#: Files written directly in one directory before it becomes ``DIR/*``.
FLAT_FILES: Final = 3
#: Files written below one directory, and the distinct directories they are in (or that
#: were made), before the tree becomes ``DIR/**``.
TREE_FILES: Final = 3
TREE_DIRS: Final = 2
#: Globs only this many segments below ``/`` or deeper (``/srv/uploads/*``, never
#: ``/srv/*`` or ``/tmp/*``).
MIN_DEPTH: Final = 2
#: Permissions a written-content glob may carry.
CARRIED: Final = frozenset("rwak")
_WRITING: Final = frozenset("wa")
#: System trees a workload never owns (in addition to content.REFUSED_PLACES).
SYSTEM_TREES: Final = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/snap",
    "/var/lib/dpkg", "/var/lib/apt", "/var/cache/apt",
)


@dataclass(frozen=True)
class WrittenContentGlob:
    """One generalisation: the glob, its permissions and how much evidence it had."""

    pattern: str
    perms: str
    files: int
    directories: int

    def describe(self) -> str:
        where = (f"in {self.directories} directories" if self.directories > 1
                 else "in one directory")
        return (f"written content: {self.files} files written {where}, every file below "
                "written by the workload; generalised for writing (never link, map "
                "executable or run)")


def refusal(directory: str) -> str | None:
    """Why new names below ``directory`` may not be written, or None when they may."""
    for place in SYSTEM_TREES:
        if content._under(directory, place):
            return f"{place} is a system tree"
    return content.refusal(directory)


def _parent(path: str) -> str:
    return path.rstrip("/").rpartition("/")[0]


def _ancestors(directory: str) -> list[str]:
    """``directory`` and each directory above it, ``/`` excluded."""
    out = []
    while directory:
        out.append(directory)
        directory = directory.rpartition("/")[0]
    return out


def _fixed_dir(pattern: str) -> str:
    """The literal directory a glob lies in: the segments before its first wildcard."""
    fixed: list[str] = []
    for segment in pattern.split("/")[:-1]:
        if has_wildcard(segment):
            break
        fixed.append(segment)
    return unescape_literal("/".join(fixed))


@dataclass
class _Evidence:
    """What the model holds below the directories it wrote in."""

    #: literal file rules that may be replaced (written, perms within CARRIED)
    written: dict[FileKey, str]
    #: literal directory rules (``DIR/sub/``) a tree may replace
    made_dirs: dict[FileKey, str]
    #: directories holding a rule that would gain write: each one's parent (flat) and
    #: all their ancestors (tree)
    blocked_flat: set[str]
    blocked_tree: set[str]
    #: where the wildcards of blocking globs start: nothing at or below them is taken
    glob_roots: list[str]

    def blocked(self, directory: str, tree: bool) -> bool:
        if directory in (self.blocked_tree if tree else self.blocked_flat):
            return True
        return any(content._under(directory, root) for root in self.glob_roots)


def _evidence(model: BehaviourModel) -> _Evidence:
    written: dict[FileKey, str] = {}
    made_dirs: dict[FileKey, str] = {}
    writable: set[str] = set()
    blockers: list[str] = []
    glob_roots: list[str] = []
    for key, perms in model.files.items():
        path, old, _owner = key
        letters = set("".join(perms))
        if has_wildcard(path):
            if not letters & _WRITING:
                glob_roots.append(_fixed_dir(path))
            continue
        literal = unescape_literal(path)
        if letters & _WRITING:
            writable.add(literal)
        if old:
            continue  # link rules keep their own literal rule
        if literal.endswith("/"):
            if letters <= CARRIED:
                made_dirs[key] = literal
        elif not letters & _WRITING:
            blockers.append(literal)  # only read, locked, mapped executable or linked
        elif letters <= CARRIED:
            written[key] = literal
        # written and also mapped or linked: keeps its literal rule, the glob adds nothing
    for pattern in model.executions:
        if has_wildcard(pattern):
            glob_roots.append(_fixed_dir(pattern))
        elif unescape_literal(pattern) not in writable:
            blockers.append(unescape_literal(pattern))
    blocked_flat = {_parent(path) for path in blockers}
    blocked_tree = {a for d in blocked_flat for a in _ancestors(d)}
    blocked_tree.update(a for root in glob_roots for a in _ancestors(root))
    return _Evidence(written, made_dirs, blocked_flat, blocked_tree, glob_roots)


def _perms_below(model: BehaviourModel, keys: list[FileKey]) -> str:
    letters: set[str] = set()
    for key in keys:
        letters |= set("".join(model.files[key]))
    return "".join(p for p in "rwak" if p in letters)


def _plan(model: BehaviourModel) -> list[tuple[WrittenContentGlob, list[FileKey]]]:
    """The globs to make and the literal rules each replaces (the model unchanged)."""
    ev = _evidence(model)
    below: dict[str, list[FileKey]] = defaultdict(list)
    dirs_below: dict[str, set[str]] = defaultdict(set)
    directly: dict[str, list[FileKey]] = defaultdict(list)
    for key, literal in ev.written.items():
        parent = _parent(literal)
        directly[parent].append(key)
        for ancestor in _ancestors(parent):
            below[ancestor].append(key)
            dirs_below[ancestor].add(parent)
    made_below: dict[str, list[FileKey]] = defaultdict(list)
    for key, literal in ev.made_dirs.items():
        made = literal.rstrip("/")
        for ancestor in _ancestors(_parent(made)):
            made_below[ancestor].append(key)
            if key in model.files and set("".join(model.files[key])) & _WRITING:
                dirs_below[ancestor].add(made)
    plans: list[tuple[WrittenContentGlob, list[FileKey]]] = []
    taken: list[str] = []
    trees = sorted((d for d, keys in below.items()
                    if len(keys) >= TREE_FILES and len(dirs_below[d]) >= TREE_DIRS
                    and d.count("/") >= MIN_DEPTH),
                   key=lambda d: (-d.count("/"), d))
    for directory in trees:  # deepest first: the narrowest tree that qualifies
        if any(content._under(directory, t) or content._under(t, directory) for t in taken):
            continue
        if ev.blocked(directory, tree=True) or refusal(directory) is not None:
            continue
        if any(refusal(d) is not None for d in dirs_below[directory]):
            continue
        keys = below[directory] + made_below[directory]
        perms = _perms_below(model, keys)
        pattern = escape_literal(directory) + "/**"
        if not safety.allows(pattern, perms):
            continue
        taken.append(directory)
        plans.append((WrittenContentGlob(pattern, perms, len(below[directory]),
                                         len(dirs_below[directory])), keys))
    for directory, keys in sorted(directly.items()):
        if (len(keys) < FLAT_FILES or directory.count("/") < MIN_DEPTH
                or any(content._under(directory, t) for t in taken)
                or ev.blocked(directory, tree=False) or refusal(directory) is not None):
            continue
        perms = _perms_below(model, keys)
        pattern = escape_literal(directory) + "/*"
        if safety.allows(pattern, perms):
            plans.append((WrittenContentGlob(pattern, perms, len(keys), 1), keys))
    return plans


def written_content_globs(model: BehaviourModel) -> list[WrittenContentGlob]:
    """The globs :func:`generalise_written_content` would make (nothing changed)."""
    return [glob for glob, _keys in _plan(model)]


def generalise_written_content(model: BehaviourModel) -> list[WrittenContentGlob]:
    """Replace the written rules of each work area with its glob; returns what was made.
    ``owner`` is kept only when every replaced rule had it."""
    plans = _plan(model)
    for glob, keys in plans:
        owner = all(key[2] for key in keys)
        for key in keys:
            model.files.pop(key)
            model.record_example(glob.pattern, unescape_literal(key[0]))
        model.files.setdefault((glob.pattern, "", owner), set()).update(glob.perms)
    if plans:
        model.remap_provenance()
    return [glob for glob, _keys in plans]
