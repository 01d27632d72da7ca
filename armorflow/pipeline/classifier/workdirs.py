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
  in), the highest such tree (everything below it is the workload's, see below); both
  at least :data:`MIN_DEPTH` segments below ``/``;
* the glob carries the union of the replaced rules' permissions, which may only be
  ``r``, ``w``, ``a`` and ``k``: a new name can be written and read back, never linked,
  mapped executable or run;
* a directory is *blocked* when any rule below it (in it, for ``DIR/*``) would gain a
  permission it never had that matters: a file only read (configuration or input inside
  the work area), a file run or mapped executable that the workload did not write, a
  hard link whose target it did not write (the name opens the target), a directory
  below it only listed (for ``DIR/**``), a mount point, or a glob that is only read or
  carries more than the area's letters. Widening write onto those would turn a writable
  work area into a way to change what the workload reads or runs;
* never where code is loaded with a plain read (a file with a code suffix written
  there, or a directory such as ``__pycache__`` or ``node_modules``: a planted file
  would run), in the places where reads are not generalised either
  (classifier/content.py: node configuration, homes, kernel trees, runtime state, logs,
  secret-looking directories, node file systems mounted in), in system trees (``/usr``,
  ``/bin``, ``/lib``...), for a tree holding such a place, or on a path that is not
  canonical; and the classifier's safety policy is applied on top.

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
#: Directories of code that an interpreter loads with a plain read (no ``x``, no ``m``):
#: a planted file there runs.
CODE_DIRS: Final = frozenset({
    "__pycache__", "site-packages", "dist-packages", "node_modules", ".venv", "venv",
    "vendor", "gems", "plugins", "extensions", "modules",
})
#: Suffixes of such code: a directory where one was written stays literal.
CODE_SUFFIXES: Final = frozenset({
    "py", "pyc", "pyo", "pth", "php", "phtml", "phar", "js", "mjs", "cjs", "class", "jar",
    "war", "rb", "pl", "pm", "lua", "sh", "so", "jsp", "el", "elc",
})
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
    if not content.canonical(directory):
        return "the path is not canonical (an empty, '.' or '..' segment)"
    for place in SYSTEM_TREES:
        if content._under(directory, place):
            return f"{place} is a system tree"
    for segment in directory.split("/"):
        if segment.lower() in CODE_DIRS:
            return f"{segment!r} holds code an interpreter loads"
    return content.refusal(directory)


def tree_refusal(directory: str, seen: set[str]) -> str | None:
    """Why ``DIR/**`` may not be made for writing: the directory is refused, a refused
    place lies inside it (``/var/cache/**`` would reach ``/var/cache/apt``), or one of the
    directories seen below it is refused."""
    return content.tree_refusal(directory, seen, refusal,
                                (*SYSTEM_TREES, *content.REFUSED_PLACES))


def _code(name: str) -> bool:
    """A name an interpreter or the dynamic loader runs with a plain read."""
    return name.rpartition(".")[2].lower() in CODE_SUFFIXES and "." in name


_parent = content._parent


def _ancestors(directory: str) -> list[str]:
    """``directory`` and each directory above it, ``/`` excluded."""
    return [directory, *content._ancestors_above(directory)] if directory else []


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
    links: list[tuple[str, str]] = []
    listed: list[str] = []
    for key, perms in model.files.items():
        path, old, _owner = key
        letters = set("".join(perms))
        if has_wildcard(path) or has_wildcard(old):
            # a glob only read, or carrying anything the area's glob may not (an earlier
            # pass may have merged a mapped file with written siblings), blocks where it
            # reaches
            if not letters & _WRITING or not letters <= CARRIED or old:
                glob_roots.append(_fixed_dir(path if has_wildcard(path) else old))
            continue
        literal = unescape_literal(path)
        if letters & _WRITING:
            writable.add(literal)
        if old:
            links.append((literal, unescape_literal(old)))
            continue
        if literal.endswith("/"):
            if letters & _WRITING and letters <= CARRIED:
                made_dirs[key] = literal  # made (or removed) by the workload
            else:
                listed.append(literal.rstrip("/"))  # only listed: not the workload's own
        elif not letters & _WRITING:
            blockers.append(literal)  # only read, locked, mapped executable or linked
        elif letters <= CARRIED:
            written[key] = literal
        # written and also mapped or linked: keeps its literal rule, the glob adds nothing
    for new, target in links:
        # a hard link's name opens its target: write on the name would be write on a
        # file the workload may only have read
        if target not in writable:
            blockers += [new, target]
    for pattern in model.executions:
        if has_wildcard(pattern):
            glob_roots.append(_fixed_dir(pattern))
        elif unescape_literal(pattern) not in writable:
            blockers.append(unescape_literal(pattern))
    for _op, pattern, _fstype in model.mounts:
        # a mount point inside the area would make whatever is mounted there writable
        if has_wildcard(pattern):
            glob_roots.append(_fixed_dir(pattern))
        elif pattern:
            blockers.append(unescape_literal(pattern).rstrip("/") + "/.")
    blocked_flat = {_parent(path) for path in blockers}
    blocked_tree = {a for d in blocked_flat for a in _ancestors(d)}
    blocked_tree.update(a for root in glob_roots for a in _ancestors(root))
    # ``DIR/**`` matches a directory below it; ``DIR/*`` and the directory's own tree
    # do not
    blocked_tree.update(a for d in listed for a in _ancestors(_parent(d)))
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
    code: set[str] = set()  # directories where code was written (flat), and above (tree)
    for key, literal in ev.written.items():
        parent = _parent(literal)
        if _code(literal.rpartition("/")[2]):
            code.update(_ancestors(parent))
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
    qualified = [d for d, keys in below.items()
                 if len(keys) >= TREE_FILES and len(dirs_below[d]) >= TREE_DIRS
                 and d.count("/") >= MIN_DEPTH and not ev.blocked(d, tree=True)
                 and d not in code and tree_refusal(d, dirs_below[d]) is None
                 and safety.allows(escape_literal(d) + "/**",
                                   _perms_below(model, below[d] + made_below[d]))]
    # The widest the workload itself wrote in: every file below a qualified tree was
    # written by the workload (a file only read, run or listed blocks the tree and each
    # one above it), so the highest qualified directory that it wrote a file or made a
    # directory in is its work area, whatever the inner directories look like (which of
    # them hold three files depends on the run). A directory above, that it never wrote
    # in, may hold what the window did not see.
    made_in = {_parent(literal) for literal in ev.made_dirs.values()}
    roots = [d for d in qualified if directly.get(d) or d in made_in]
    taken = sorted(d for d in roots
                   if not any(content._under(d, other) and d != other for other in roots))
    for directory in taken:
        keys = below[directory] + made_below[directory]
        plans.append((WrittenContentGlob(escape_literal(directory) + "/**",
                                         _perms_below(model, keys), len(below[directory]),
                                         len(dirs_below[directory])), keys))
    for directory, keys in sorted(directly.items()):
        if (len(keys) < FLAT_FILES or directory.count("/") < MIN_DEPTH
                or any(content._under(directory, t) for t in taken)
                or ev.blocked(directory, tree=False) or directory in code
                or refusal(directory) is not None):
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
