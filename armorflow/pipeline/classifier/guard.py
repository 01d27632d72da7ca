"""The safety policy applied to a whole model when its window closes, and the list of
collapses it refused (for the window's counts and notes, and for ``armorflow report``).

The way in already refuses, per entry, a collapsed pattern the policy forbids for that
entry's permissions (:class:`~armorflow.pipeline.classifier.safety.SafeCollapse`). At
close, three more things can put a glob on a rule: a literal folded into a pattern the
model learned (:meth:`~armorflow.model.BehaviourModel.fold_learned`), the sibling
collapse, and globs that came with the model from elsewhere (an older document). Each is
checked here against the rule's own permissions; since the policy refuses letter by
letter, checking each rule before rules merge keeps the merged permissions allowed too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from armorflow.aaglob import escape_literal, has_wildcard, unescape_literal
from armorflow.model import BehaviourModel, FileKey
from armorflow.pipeline.classifier.safety import SafetyRule, allows, refusal
from armorflow.pipeline.classifier.siblings import DEFAULT_THRESHOLD, collapse_siblings

#: How many refused collapses a window's notes list one by one (the count has them all).
NOTES_LISTED = 20


@dataclass(frozen=True)
class Refusal:
    """A collapse the policy refused: the rule kept ``kept`` (its literal path)."""

    #: ``file``, ``link target``, ``exec`` or ``mount``.
    kind: str
    kept: str
    perms: str
    #: The glob that was refused.
    glob: str
    #: What proposed the glob: ``classifier``, ``learned pattern``, ``sibling collapse``,
    #: or ``stored glob`` (came with the model; only its recorded examples were kept).
    via: str
    rule: SafetyRule

    def describe(self) -> str:
        return (
            f"{self.kind} {self.kept} ({self.perms}) kept literal by safety rule "
            f"{self.rule.name}: {self.via} proposed {self.glob}"
        )


def _letters(perms: Iterable[str]) -> str:
    return "".join(sorted(set("".join(perms))))


# --- applying the policy at close --------------------------------------------------------


def created_dirs(model: BehaviourModel) -> frozenset[str]:
    """Directories (as patterns) the workload writes or appends files in: the model-level
    context that lets the sibling collapse merge the names it generates there sooner."""
    return frozenset(
        path.rpartition("/")[0]
        for (path, _old, _owner), perms in model.files.items()
        if set("".join(perms)) & {"w", "a"} and "/" in path
    )


def sibling_mapping(model: BehaviourModel, threshold: int = DEFAULT_THRESHOLD) -> dict[str, str]:
    """The sibling collapse the model's file patterns would get (before the policy)."""
    return collapse_siblings(
        {key[0] for key in model.files}, threshold=threshold, created_dirs=created_dirs(model)
    )


def guarded_sibling_collapse(model: BehaviourModel, threshold: int = DEFAULT_THRESHOLD) -> None:
    """The sibling collapse of the model's file rules, except where the policy refuses the
    merged glob for a rule's permissions: that rule keeps its own path."""
    mapping = sibling_mapping(model, threshold)
    if all(src == dst for src, dst in mapping.items()):
        return
    # A file mapped executable and never written must not gain write from a written
    # sibling (plugin1.so mapped, plugin2.so written: plugin*.so would be mrw): such a
    # group keeps its literal rules.
    mapped, writing = set(), set()
    for (path, _old, _owner), perms in model.files.items():
        new = mapping.get(path, path)
        letters = _letters(perms)
        if new != path:
            if "m" in letters and not set(letters) & {"w", "a"}:
                mapped.add(new)
            if set(letters) & {"w", "a"}:
                writing.add(new)
    unsafe = mapped & writing
    files: dict[FileKey, set[str]] = {}
    for (path, old, owner), perms in model.files.items():
        new = mapping.get(path, path)
        if new != path and new not in unsafe and allows(new, _letters(perms)):
            examples = model.collapsed.setdefault(new, set())
            examples.update(model.collapsed.pop(path, {path}))
        else:
            new = path
        files.setdefault((new, old, owner), set()).update(perms)
    model.files = files
    # Keep the bounded example sets bounded after merging.
    for examples in model.collapsed.values():
        while len(examples) > 3:
            examples.discard(max(examples))


def _examples_of(model: BehaviourModel, pattern: str) -> list[str]:
    """Literal patterns to keep in place of a refused stored glob (its recorded examples,
    escaped as literal patterns)."""
    return [escape_literal(e) for e in sorted(model.collapsed.get(pattern, ()))]


def enforce_stored_globs(model: BehaviourModel) -> list[Refusal]:
    """Replace globs the policy refuses that no stage of this run proposed (a model from an
    older document): each becomes the literal examples recorded for it, or goes."""
    if not _any_refused(model):
        return []
    refused: list[Refusal] = []
    files: dict[FileKey, set[str]] = {}
    for (path, old, owner), perms in model.files.items():
        letters = _letters(perms)
        paths = _replace(model, "file", path, letters, refused)
        olds = _replace(model, "link target", old, letters, refused) if old else [old]
        for p in paths:
            for o in olds:
                files.setdefault((p, o, owner), set()).update(perms)
    model.files = files
    executions: set[str] = set()
    for pattern in model.executions:
        executions.update(_replace(model, "exec", pattern, "x", refused))
    model.executions = executions
    mounts = set()
    for op, pattern, fstype in model.mounts:
        for p in _replace(model, "mount", pattern, "w", refused):
            mounts.add((op, p, fstype))
    model.mounts = mounts
    return refused


def _any_refused(model: BehaviourModel) -> bool:
    return (
        any(
            refusal(path, perms) is not None or (old and refusal(old, perms) is not None)
            for (path, old, _owner), perms in model.files.items()
        )
        or any(refusal(p, "x") is not None for p in model.executions)
        or any(refusal(p, "w") is not None for _op, p, _fs in model.mounts)
    )


def _replace(
    model: BehaviourModel, kind: str, pattern: str, letters: str, refused: list[Refusal]
) -> list[str]:
    rule = refusal(pattern, letters)
    if rule is None:
        return [pattern]
    examples = _examples_of(model, pattern)
    for kept in examples or ["(nothing)"]:
        refused.append(Refusal(kind, kept, letters, pattern, "stored glob", rule))
    return examples


# --- what was refused ---------------------------------------------------------------------


def refused_collapses(
    model: BehaviourModel,
    collapse: Callable[[str], str],
    threshold: int = DEFAULT_THRESHOLD,
) -> list[Refusal]:
    """Every literal rule of ``model`` that holds its literal path because the policy
    refused the glob the classifier, a learned pattern or the sibling collapse proposed.

    Recomputed from the model (the classifier is memoised, so this is a dict lookup per
    segment), so that it is the same for a model closed now and one read back from a file.
    """
    out: list[Refusal] = []
    siblings = sibling_mapping(model, threshold)
    for (path, old, _owner), perms in sorted(model.files.items()):
        letters = _letters(perms)
        found = _proposal_refused(model, collapse, "file", path, letters, siblings.get(path))
        if found:
            out.append(found)
        if old:
            found = _proposal_refused(model, collapse, "link target", old, letters, None)
            if found:
                out.append(found)
    for pattern in sorted(model.executions):
        found = _proposal_refused(model, collapse, "exec", pattern, "x", None)
        if found:
            out.append(found)
    for _op, pattern, _fstype in sorted(model.mounts):
        found = _proposal_refused(model, collapse, "mount", pattern, "w", None)
        if found:
            out.append(found)
    return out


def _proposal_refused(
    model: BehaviourModel,
    collapse: Callable[[str], str],
    kind: str,
    pattern: str,
    letters: str,
    sibling: str | None,
) -> Refusal | None:
    proposals: list[tuple[str, str | None]] = [("sibling collapse", sibling)]
    if not has_wildcard(pattern):
        literal = unescape_literal(pattern)
        proposals = [
            ("classifier", collapse(literal)),
            ("learned pattern", model.learned_pattern(literal, pattern)),
            *proposals,
        ]
    for via, glob in proposals:
        if glob and glob != pattern and has_wildcard(glob):
            rule = refusal(glob, letters)
            if rule is not None:
                return Refusal(kind, pattern, letters, glob, via, rule)
    return None


def merge_refusals(first: list[Refusal], then: list[Refusal]) -> list[Refusal]:
    """``first`` and those of ``then`` about another rule (a stored glob's example kept
    literal is one refusal, whichever way it is found)."""
    seen = {(r.kind, r.kept) for r in first}
    return first + [r for r in then if (r.kind, r.kept) not in seen]


def refusal_notes(refusals: list[Refusal]) -> list[str]:
    """A window's notes: the first refusals one by one, then how many more per rule."""
    notes = [r.describe() for r in refusals[:NOTES_LISTED]]
    rest: dict[str, int] = {}
    for r in refusals[NOTES_LISTED:]:
        rest[r.rule.name] = rest.get(r.rule.name, 0) + 1
    notes += [f"{n} more kept literal by safety rule {name}" for name, n in sorted(rest.items())]
    return notes
