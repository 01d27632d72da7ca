"""Replica collapse: a name that differs between replicas exactly where their own names do.

Replicas of one workload run the same code. When ``cache-0`` writes
``/var/lib/app/peers/cache-0.json`` and ``cache-1`` writes ``.../cache-1.json``, the name
is generated from the pod's own name: the next replica (``cache-2``, or ``cache-0``
rescheduled with another name under a Deployment) writes another one, and a profile of the
two literal names breaks it. The classifier cannot see this in one name (``cache-0`` looks
stable); the model can, because every rule carries its provenance (which node, pod and
container made it).

The rule is narrow on purpose. Rules are merged only when they

* differ in exactly one path segment and have the same link target, owner flag and
  depth;
* each come from sources that share a pod or node name (the containers of one pod do),
  that name appears in the varying segment, and the rules have different such names: the
  difference is explained by who made the name, not by what was asked (a container's
  name is the same in the next pod, so a name made from it is stable and stays);

and the merged segment keeps the common prefix and suffix (``cache-*.json``). The
classifier's safety policy then decides, for the union of the rules' permissions, as for
every other glob: a name under ``/etc`` never becomes writable this way.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from armorflow.aaglob import escape_literal, has_wildcard, unescape_literal
from armorflow.model import BehaviourModel, FileKey
from armorflow.pipeline.classifier import safety

#: Names shorter than this are not taken as a source's name inside a path segment
#: (``a``, ``db`` appear in too many names by chance).
MIN_NAME = 3


@dataclass(frozen=True)
class ReplicaGlob:
    """One merge: the glob, the literal names it replaced, and the pod or node names
    that explain the difference."""

    pattern: str
    literals: tuple[str, ...]
    makers: tuple[str, ...]

    def describe(self) -> str:
        return (f"replica collapse: {len(self.literals)} names that differ where the "
                f"names of their makers do ({', '.join(self.makers)})")


def source_names(source: str) -> list[str]:
    """The names of a source ("node/namespace/pod/container") that change when the
    workload is rescheduled: its pod's and its node's. A container's name does not (the
    next pod has containers of the same names), so a name made from it is stable."""
    node, _namespace, pod, _container = ([*source.split("/", 3), "", "", ""])[:4]
    return [n for n in (pod, node) if len(n) >= MIN_NAME]


def _merge(values: list[str]) -> str | None:
    """The common literal prefix and suffix of ``values`` around one ``*``."""
    first = min(values, key=len)
    pre = 0
    while pre < len(first) and all(v[pre] == first[pre] for v in values):
        pre += 1
    suf = 0
    while suf < len(first) - pre and all(v[-1 - suf] == first[-1 - suf] for v in values):
        suf += 1
    if pre + suf >= len(first) and len(set(map(len, values))) == 1:
        return None  # identical
    prefix, suffix = first[:pre], first[len(first) - suf:] if suf else ""
    return escape_literal(prefix) + "*" + escape_literal(suffix)


def replica_globs(model: BehaviourModel) -> list[tuple[ReplicaGlob, list[FileKey]]]:
    """The merges the model's file rules would get, with the rules each replaces."""
    groups: dict[tuple[str, int, str, bool, int], list[tuple[FileKey, list[str], str]]] = (
        defaultdict(list))
    for key in model.files:
        path, old, owner = key
        if has_wildcard(path):
            continue
        origin = model.provenance.get(("file", *key))
        if origin is None or not origin[1]:
            continue
        # The names every source of this rule shares (the containers of one pod share
        # its pod and node names; two pods share none).
        shared = set(source_names(origin[1][0]))
        for source in origin[1][1:]:
            shared &= set(source_names(source))
        segments = unescape_literal(path).split("/")
        for index in range(1, len(segments)):
            # Only where the makers' own name shows: keeps this pass linear and small.
            maker = next((n for n in sorted(shared, key=len, reverse=True)
                          if n in segments[index]), None)
            if maker is None:
                continue
            rest = "/".join([*segments[:index], "\0", *segments[index + 1:]])
            groups[(rest, index, old, owner, len(segments))].append((key, segments, maker))
    out: list[tuple[ReplicaGlob, list[FileKey]]] = []
    used: set[FileKey] = set()
    for (_rest, index, _old, _owner, _n), members in sorted(groups.items()):
        members = [m for m in members if m[0] not in used]
        makers = {maker for _key, _segs, maker in members}
        if len(members) < 2 or len(makers) < 2:
            continue
        glob_segment = _merge([segs[index] for _key, segs, _source in members])
        if glob_segment is None:
            continue
        segs = members[0][1]
        pattern = "/".join(escape_literal(s) for s in segs[:index]) + "/" + glob_segment
        if index + 1 < len(segs):
            pattern += "/" + "/".join(escape_literal(s) for s in segs[index + 1:])
        perms = "".join(sorted({p for key, _s, _src in members for p in model.files[key]}))
        if not safety.allows(pattern, perms):
            continue
        keys = [key for key, _segs, _source in members]
        used.update(keys)
        literals = tuple(sorted("/".join(segs) for _key, segs, _maker in members))
        out.append((ReplicaGlob(pattern, literals, tuple(sorted(makers))), keys))
    return out


def collapse_replicas(model: BehaviourModel) -> list[ReplicaGlob]:
    """Merge the rules :func:`replica_globs` finds; returns what was made."""
    merges = replica_globs(model)
    for glob, keys in merges:
        _path, old, owner = keys[0]
        perms: set[str] = set()
        for key in keys:
            perms |= model.files.pop(key)
        model.files.setdefault((glob.pattern, old, owner), set()).update(perms)
        for literal in glob.literals:
            model.record_example(glob.pattern, literal)
    if merges:
        model.remap_provenance()
    return [glob for glob, _keys in merges]
