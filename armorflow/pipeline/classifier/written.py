"""Names the workload makes up for what it writes: temporary files, counters, fan-outs.

The path classifier judges one name at a time, and a short random run after a stable
prefix (``/tmp/ccYkKRXS.s``, ``.git/t8VBmI6``) or a small counter (``temp-8.rdb``) looks
like a name someone chose. The model sees more: the workload *wrote* these files (or made
these directories, or linked them), and written names that share a shape are generated
by the program, so the next run writes others. Two passes, both on literal rules that
carry ``w``, ``a`` or ``l``:

* **Template names** (mkstemp and its relatives): a name made of a short letter prefix
  or a word ending in ``_`` or ``-`` (git's ``refs_XXXXXX``), a run of 6 or 8 letters
  and digits, and an optional suffix from the first ``.`` on.
  Two or more such names in one directory with the same prefix and run length and
  different runs, the runs together holding at least two kinds of characters (upper,
  lower, digit), become ``PREFIX??????SUFFIX``: one ``?`` per random character, so the
  glob keeps the template's exact width; a template seen with two or more suffixes
  takes any (``PREFIX??????.*``). A name alone qualifies only with a 6-character run
  holding all three kinds (``t8VBmI6``), the shape of glibc's and git's templates, or
  letters whose case changes as no word's does (``tFVkZqM``).
* **Counters and fan-outs**: two or more written rules whose paths (and link targets)
  are the same except for digit runs, or for two-character hexadecimal directories
  (``objects/0f/``), become one glob: each digit run that differs becomes ``*``, each
  differing hex directory ``??``. Two are enough here (the sibling collapse needs more)
  because the workload itself made both.

Every glob then goes through the classifier's safety policy (classifier/safety.py) for
the union of the merged rules' permissions; a refused one leaves its rules literal and
is counted. Names are hostile input: the passes only ever replace characters of the
varying runs, never a ``/``, so a glob stays in the directory its names were written in.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from armorflow.aaglob import escape_literal, has_wildcard, matches, unescape_literal
from armorflow.model import BehaviourModel, FileKey
from armorflow.pipeline.classifier import safety

#: Letters a template prefix may hold (``cc``, ``t``, ``tmp``, ``sess``).
MAX_PREFIX = 4
#: Characters of a word-and-separator template prefix (``tmp_obj_``, ``refs_``).
MAX_WORD_PREFIX = 16
#: Widths of the random run: 6 (glibc mkstemp, git), 8 (Python's tempfile).
RUN_WIDTHS = (6, 8)
_DIGITS = re.compile(r"(\d+)")
_HEX2 = re.compile(r"[0-9a-f]{2}")
#: Letters a rule must carry for its name to count as written by the workload.
WRITING = frozenset("wal")


@dataclass(frozen=True)
class WrittenGlob:
    """One merge: the glob, the literal rules it replaced, and which pass made it."""

    pattern: str
    literals: tuple[str, ...]
    kind: str  # "template" or "counter"
    #: The link target's glob of merged link rules ("" for other rules).
    target: str = ""

    def describe(self) -> str:
        if self.kind == "template":
            return (f"temporary names: {len(self.literals)} written name(s) of one "
                    "template (a short prefix and a random run)")
        return (f"generated names: {len(self.literals)} written paths that differ only "
                "in counters or fan-out directories")


def _written(perms: set[str]) -> bool:
    return bool(set("".join(perms)) & WRITING)


def _kinds(text: str) -> int:
    return sum((any(c.isupper() for c in text), any(c.islower() for c in text),
                any(c.isdigit() for c in text)))


def _prefix_ok(prefix: str) -> bool:
    """A template's fixed part: a few letters (``cc``, ``t``), or a word ending in a
    separator (git's ``refs_XXXXXX`` and ``tmp_obj_XXXXXX``, ``sess-XXXXXX``)."""
    if not prefix:
        return True
    if len(prefix) <= MAX_PREFIX and prefix.isalpha():
        return True
    word = prefix[:-1]
    return (len(prefix) <= MAX_WORD_PREFIX and prefix[-1] in "_-" and word.isascii()
            and any(c.isalpha() for c in word)
            and all(c.isalnum() or c in "_-" for c in word))


def _templates(name: str) -> list[tuple[str, int, str, str]]:
    """Every (prefix, width, suffix, run) reading of ``name`` as a template name."""
    stem, dot, rest = name.partition(".")
    suffix = dot + rest
    out = []
    for width in RUN_WIDTHS:
        cut = len(stem) - width
        if cut >= 0 and _prefix_ok(stem[:cut]):
            run = stem[cut:]
            if run.isascii() and run.isalnum():
                out.append((stem[:cut], width, suffix, run))
    return out


def _template_globs(model: BehaviourModel) -> dict[FileKey, tuple[str, str]]:
    """The template glob of each written literal file rule that has one."""
    by_dir: dict[tuple[str, str, bool], list[tuple[FileKey, str]]] = defaultdict(list)
    for key, perms in model.files.items():
        path, old, owner = key
        if old or has_wildcard(path) or path.endswith("/") or not _written(perms):
            continue
        parent, _, name = unescape_literal(path).rpartition("/")
        if parent:
            by_dir[(parent, old, owner)].append((key, name))
    out: dict[FileKey, tuple[str, str]] = {}
    for (parent, _old, _owner), members in by_dir.items():
        groups: dict[tuple[str, int], list[tuple[FileKey, str, str]]] = defaultdict(list)
        for key, name in members:
            for prefix, width, suffix, run in _templates(name):
                groups[(prefix, width)].append((key, suffix, run))
        # Longest prefix first: ``cc??????`` rather than ``????????`` for ``ccYkKRXS``.
        for (prefix, width), found in sorted(groups.items(), key=lambda g: -len(g[0][0])):
            found = [f for f in found if f[0] not in out]
            runs = {run for _key, _suffix, run in found}
            if len(runs) >= 2:
                # Runs that differ only in digits are a counter (``job0001``), the
                # counter pass's to merge; random runs differ in letters too.
                if _kinds("".join(runs)) < 2 or len({_DIGITS.sub("0", r) for r in runs}) == 1:
                    continue
            elif not (len(found) == 1 and width == 6 and _lone_random(found[0][2])):
                continue
            # One template seen with several suffixes takes any: gcc's ``-c`` run makes
            # ``.s`` and ``.res``, its one-command build ``.o`` from the same template.
            any_suffix = len({suffix for _key, suffix, _run in found if suffix}) >= 2
            for key, suffix, _run in found:
                tail = ANY_SUFFIX if any_suffix and suffix else escape_literal(suffix)
                out[key] = (_template_glob(parent, prefix, width, tail), "template")
    return out


#: The suffix glob of a template seen with two or more suffixes: a ``.`` and anything
#: but ``/`` after it.
ANY_SUFFIX = ".*"


def _template_glob(parent: str, prefix: str, width: int, tail: str) -> str:
    return escape_literal(parent) + "/" + escape_literal(prefix) + "?" * width + tail


def _lone_random(run: str) -> bool:
    """Whether one 6-character run alone reads as random: all three kinds of characters
    (glibc's and git's alphabet), or letters whose case changes where no word's would:
    two or more capitals after the first character beside two or more lower-case
    letters (``FVkZqM``; ``MyFile``, ``ReadMe``, ``README`` do not qualify)."""
    if _kinds(run) == 3:
        return True
    upper_after_first = sum(c.isupper() for c in run[1:])
    lower = sum(c.islower() for c in run)
    return upper_after_first >= 2 and lower >= 2


def _segment_shape(segment: str) -> str:
    """A literal segment with its varying parts blanked: hex fan-out directories and
    digit runs. Wildcard segments are their own shape."""
    if has_wildcard(segment):
        return segment
    literal = unescape_literal(segment)
    if _HEX2.fullmatch(literal):
        return "\0x"
    return _DIGITS.sub("\0d", literal)


def _shape(key: FileKey) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    path, old, owner = key
    return (tuple(_segment_shape(s) for s in path.split("/")),
            tuple(_segment_shape(s) for s in old.split("/")) if old else (), owner)


def _merge_segment(values: list[str]) -> str | None:
    """One segment's glob over the members' values (all of one shape), or None."""
    if len(set(values)) == 1:
        return values[0]
    literals = [unescape_literal(v) for v in values]
    if all(_HEX2.fullmatch(v) for v in literals):
        # ``be``/``cb`` alone could be words: a fan-out shows digits somewhere.
        return "??" if any(c.isdigit() for v in literals for c in v) else None
    pieces = [_DIGITS.split(v) for v in literals]
    out = []
    for index, column in enumerate(zip(*pieces, strict=True)):
        if len(set(column)) == 1:
            out.append(escape_literal(column[0]))
        elif index % 2:  # a digit run (odd places of re.split with a group)
            out.append("*")
        else:
            return None
    return "".join(out)


def _merge_paths(paths: list[str]) -> str | None:
    columns = zip(*(p.split("/") for p in paths), strict=True)
    merged = [_merge_segment(list(column)) for column in columns]
    return None if any(m is None for m in merged) else "/".join(m for m in merged if m is not None)


def _counter_globs(model: BehaviourModel,
                   taken: dict[FileKey, tuple[str, str]]) -> dict[FileKey, tuple[str, str, str]]:
    """The counter/fan-out glob (path, link target) of each written rule that has one."""
    groups: dict[tuple[object, ...], list[FileKey]] = defaultdict(list)
    for key, perms in model.files.items():
        if key in taken or not _written(perms):
            continue
        if not key[0].startswith("/"):
            continue
        shape = _shape(key)
        if "\0" not in "".join(shape[0]) + "".join(shape[1]):
            continue  # nothing that varies
        groups[shape].append(key)
    out: dict[FileKey, tuple[str, str, str]] = {}
    for keys in groups.values():
        if len(keys) < 2:
            continue
        glob = _merge_paths([k[0] for k in keys])
        target = _merge_paths([k[1] for k in keys]) if keys[0][1] else ""
        if glob is None or target is None or (glob == keys[0][0] and target == keys[0][1]):
            continue
        for key in keys:
            out[key] = (glob, target, "counter")
    return out


def _run_not_written(model: BehaviourModel) -> list[str]:
    """Literal names the workload ran or mapped executable and never wrote: a written
    glob that matches one would let the workload change code it runs (plugin1.so mapped,
    plugin2.so and plugin3.so written: plugin*.so w would reach plugin1.so)."""
    writing: set[str] = set()
    mapped: set[str] = set()
    for (path, _old, _owner), perms in model.files.items():
        if has_wildcard(path):
            continue
        letters = set("".join(perms))
        if letters & set("wa"):
            writing.add(unescape_literal(path))
        elif "m" in letters:
            mapped.add(unescape_literal(path))
    ran = {unescape_literal(p) for p in model.executions if not has_wildcard(p)}
    return sorted((mapped | ran) - writing)


def written_globs(model: BehaviourModel) -> tuple[list[tuple[WrittenGlob, list[FileKey]]], int]:
    """The merges the two passes would make, and how many the safety policy refused."""
    templates = _template_globs(model)
    counters = _counter_globs(model, templates)
    targets: dict[tuple[str, str, bool, str], list[FileKey]] = defaultdict(list)
    for key, (glob, kind) in templates.items():
        targets[(glob, key[1], key[2], kind)].append(key)
    for key, (glob, old, kind) in counters.items():
        targets[(glob, old, key[2], kind)].append(key)
    out: list[tuple[WrittenGlob, list[FileKey]]] = []
    refused = 0
    run = _run_not_written(model) if targets else []
    for (glob, old, _owner, kind), keys in sorted(targets.items()):
        perms = "".join(sorted({p for key in keys for p in "".join(model.files[key])}))
        literals = [k[0] for k in keys]
        if not all(matches(glob, unescape_literal(p)) for p in literals):
            continue  # never widen past what the merge was meant to cover
        if not safety.allows(glob, perms) or (old and not safety.allows(old, "l")) or any(
                matches(glob, name) for name in run):
            refused += 1
            continue
        made = WrittenGlob(glob, tuple(sorted(unescape_literal(p) for p in literals)), kind,
                           old)
        out.append((made, keys))
    return out, refused


def collapse_written(model: BehaviourModel) -> tuple[list[WrittenGlob], int]:
    """Merge the rules :func:`written_globs` finds; returns what was made and the number
    of merges the safety policy refused."""
    merges, refused = written_globs(model)
    for made, keys in merges:
        perms: set[str] = set()
        for key in keys:
            perms |= model.files.pop(key)
        model.files.setdefault((made.pattern, made.target, keys[0][2]), set()).update(perms)
        for literal in made.literals:
            model.record_example(made.pattern, literal)
    if merges:
        model.remap_provenance()
    return [made for made, _keys in merges], refused


def explain(pattern: str, examples: set[str]) -> WrittenGlob | None:
    """The merge that made ``pattern`` from ``examples`` (literal paths), when one of the
    two passes makes exactly it; for ``armorflow report`` and ``collapse --explain``."""
    if not examples:
        return None
    literals = tuple(sorted(examples))
    parent = literals[0].rpartition("/")[0]
    several = len({e.rpartition("/")[2].partition(".")[2] for e in literals}) >= 2

    def readings(literal: str) -> set[str]:
        out = set()
        for prefix, width, suffix, _run in _templates(literal.rpartition("/")[2]):
            out.add(_template_glob(parent, prefix, width, escape_literal(suffix)))
            if suffix and several:
                out.add(_template_glob(parent, prefix, width, ANY_SUFFIX))
        return out

    if all(pattern in readings(e) for e in literals):
        return WrittenGlob(pattern, literals, "template")
    if len(literals) >= 2 and len({e.count("/") for e in literals}) == 1:
        merged = _merge_paths([escape_literal(e) for e in literals])
        if merged == pattern:
            return WrittenGlob(pattern, literals, "counter")
    return None
