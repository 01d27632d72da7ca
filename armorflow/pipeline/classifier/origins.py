"""Which rule or feature made each glob of a model (``armorflow report``).

A model keeps, per collapsed pattern, the smallest literal paths it replaced. Each
wildcard segment of the pattern is explained from one of them: the classifier's own
:class:`~armorflow.pipeline.classifier.classifier.Explanation` when the classifier puts
the same segment there, else the sibling collapse (numbered names, digit runs merged),
the read-only content rule (classifier/content.py), the written content rule
(classifier/workdirs.py), the written-names passes
(classifier/written.py), or a pattern the model learned from a
sibling name and folded this one into.
"""

from __future__ import annotations

from dataclasses import dataclass

from armorflow.aaglob import has_wildcard, matches
from armorflow.model import BehaviourModel
from armorflow.pipeline.classifier.classifier import PathClassifier


@dataclass(frozen=True)
class GlobOrigin:
    """Why one glob of a model is what it is."""

    pattern: str
    #: The literal path explained (None when the model recorded none).
    example: str | None
    #: One line per wildcard segment (or one for the whole glob).
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return "; ".join(self.reasons)


def model_globs(model: BehaviourModel) -> list[str]:
    """Every distinct glob the model's rules carry (files, link targets, execs, mounts)."""
    found = {p for (path, old, _owner) in model.files for p in (path, old) if p}
    found |= model.executions
    found |= {path for _op, path, _fstype in model.mounts}
    return sorted(p for p in found if has_wildcard(p))


def glob_origin(pattern: str, examples: set[str], classifier: PathClassifier,
                writes: bool = False) -> GlobOrigin:
    """Explain ``pattern`` from the examples it replaced (``writes``: its rule carries
    write or append)."""
    if not examples:
        return GlobOrigin(pattern, None, ("no recorded example: the glob came with the model",))
    ordered = sorted(examples)
    # Prefer an example the classifier turns into exactly this glob: then every segment
    # is the classifier's.
    example = next((e for e in ordered if classifier.pure_collapse(e) == pattern), ordered[0])
    explained = classifier.explain_segments(example)
    if len(explained) == 1 and explained[0].result == pattern:  # /sys/devices/**
        return GlobOrigin(pattern, example, (f"classifier: {explained[0].describe()}",))
    if _content_glob(pattern, ordered, classifier):
        base = pattern.rpartition("/")[0]
        if writes:
            return GlobOrigin(pattern, example, (
                f"written content: several files written under {base}, and every file "
                "below it written by the workload (docs/profiles.md, \"Written content\")",))
        return GlobOrigin(pattern, example, (
            f"read-only content: many files read, and only read, under {base} "
            "(docs/profiles.md, \"Read-only content\")",))
    pattern_parts = pattern.split("/")
    literal_parts = example.split("/")
    if len(pattern_parts) != len(literal_parts) or len(explained) != len(literal_parts):
        return GlobOrigin(pattern, example, ("a pattern learned from a sibling name",))
    reasons: list[str] = []
    for piece, literal, why in zip(pattern_parts, literal_parts, explained, strict=True):
        if not has_wildcard(piece):
            continue
        if why.result == piece:
            reasons.append(f"{literal!r}: classifier: {why.describe()}")
        elif _numbered_sibling(piece, literal):
            reasons.append(
                f"{literal!r}: sibling collapse (numbered siblings differ only in digit runs)"
            )
        else:
            reasons.append(f"{literal!r}: a pattern learned from a sibling name")
    return GlobOrigin(pattern, example, tuple(reasons))


def _content_glob(pattern: str, examples: list[str], classifier: PathClassifier) -> bool:
    """``pattern`` is what the read-only content rule writes (``DIR/*`` or ``DIR/**``
    over names the classifier keeps and that are not numbered siblings)."""
    base, _, tail = pattern.rpartition("/")
    if tail not in ("*", "**") or has_wildcard(base) or not examples:
        return False
    for example in examples:
        if not matches(pattern, example) or classifier.pure_collapse(example) == pattern:
            return False
        if tail == "*" and _numbered_sibling(tail, example.rpartition("/")[2]):
            return False
    return True


def _numbered_sibling(piece: str, literal: str) -> bool:
    """``piece`` is what the sibling collapse writes for ``literal``: one ``*`` over a
    varying region that starts and ends with a digit (``client_temp/*``, ``man*``)."""
    if piece.count("*") != 1 or "\\" in piece or not matches("/" + piece, "/" + literal):
        return False
    prefix, suffix = piece.split("*")
    middle = literal[len(prefix) : len(literal) - len(suffix)]
    return bool(middle) and middle[0].isdigit() and middle[-1].isdigit()


def _replica_origin(pattern: str, model: BehaviourModel) -> GlobOrigin | None:
    """The replica collapse's explanation, when the glob's examples each hold the pod or
    node name of one of the replicas that made the rule (classifier/replicas.py)."""
    from armorflow.pipeline.classifier.replicas import source_names

    examples = sorted(model.collapsed.get(pattern, ()))
    origin = (model.provenance.get(("file", pattern, "", True))
              or model.provenance.get(("file", pattern, "", False)))
    if not examples or origin is None or len(origin[1]) < 2 or pattern.count("*") != 1:
        return None
    names = [n for source in origin[1] for n in source_names(source)]
    if not all(any(n in e.rpartition("/")[2] or f"/{n}" in e for n in names)
               for e in examples):
        return None
    pods = ", ".join(sorted({s.split("/")[2] for s in origin[1] if s.count("/") >= 3}))
    return GlobOrigin(pattern, examples[0], (
        f"replica collapse: the names differ where the names of the replicas that made "
        f"them do ({pods})",))


def _written_origin(pattern: str, model: BehaviourModel) -> GlobOrigin | None:
    """The written-names explanation (classifier/written.py), when its passes make
    exactly this glob from the glob's examples."""
    from armorflow.pipeline.classifier import written

    made = written.explain(pattern, model.collapsed.get(pattern, set()))
    if made is None:
        return None
    last, example_last = pattern.rpartition("/")[2], made.literals[0].rpartition("/")[2]
    if made.kind == "counter" and pattern.count("*") == 1 and _numbered_sibling(
            last, example_last):
        return None  # the sibling collapse makes the same glob, and made it first
    if made.kind == "template":
        why = ("temporary name: written names of one template (a short prefix, a random "
               "run of fixed width, a suffix), one ? per random character")
    else:
        why = ("generated names: written paths that differ only in counters (digit runs) "
               "or two-character fan-out directories")
    return GlobOrigin(pattern, made.literals[0], (why,))


def model_origins(model: BehaviourModel, classifier: PathClassifier) -> list[GlobOrigin]:
    """:func:`glob_origin` for every glob of the model."""
    return [_replica_origin(p, model) or _written_origin(p, model)
            or glob_origin(p, model.collapsed.get(p, set()), classifier, _writes(p, model))
            for p in model_globs(model)]


def _writes(pattern: str, model: BehaviourModel) -> bool:
    return any(set("".join(perms)) & set("wa")
               for (path, _old, _owner), perms in model.files.items() if path == pattern)
