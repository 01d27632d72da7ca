"""Explicit rules for name types that need no model: they are unambiguous by format or
by the kernel/kubelet convention of the tree they live in.
"""

from __future__ import annotations

import re

#: RFC 4122 text form (pod UIDs, PVC names, ...), anywhere in a segment.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Hex digests and container ids: 16+ hex digits not glued to other alphanumerics.
_HEX = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{16,}(?![0-9A-Za-z])")
#: kubelet's atomic writer: ``..2025_05_28_06_46_38.392375317`` (timestamp + MkdirTemp).
_K8S_TS_DIR = re.compile(r"\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+")
#: ``/proc/<pid>/map_files/<start>-<end>``.
_ADDR_RANGE = re.compile(r"[0-9a-f]+-[0-9a-f]+")

#: Parents under /proc whose numeric children are pids, tids or file descriptors.
_PROC_NUMERIC_PARENTS = frozenset({"proc", "task", "fd", "fdinfo", "children"})
#: Container image/layer stores whose children are content or random ids.
_LAYER_PARENTS = frozenset({"overlay", "overlay2", "overlay-containers", "overlay-layers"})


def segment_rule(seg: str) -> tuple[str, list[tuple[int, int]]] | None:
    """(rule name, random spans) for a segment that a format rule settles, else None."""
    if _K8S_TS_DIR.fullmatch(seg):
        return "k8s-atomic-writer-dir", [(2, len(seg))]
    spans = [m.span() for m in _UUID.finditer(seg)]
    if spans:
        return "uuid", spans
    spans = [m.span() for m in _HEX.finditer(seg)]
    if spans:
        return "hex>=16", spans
    return None


#: A directory level of a content-addressed store: one or two hex digits.
_FAN_OUT = re.compile(r"[0-9a-f]{1,2}")
#: Levels a fan-out may have (pip's http cache has five).
_MAX_FAN_OUT = 5


def fan_out_levels(parts: list[str], idx: int) -> list[int]:
    """Indexes of the hash fan-out directories right above ``parts[idx]``, when that
    segment starts with a digest (16+ hex digits): git ``objects/3f/<38 hex>``, npm
    ``content-v2/sha512/ab/cd/<hex>``, pip ``http-v2/a/b/c/d/e/<hex>``, nginx
    ``proxy_cache/c/29/<md5>``, Go's build cache ``3f/<64 hex>-a``. The levels are
    pieces of the digest, as random as it is. Never the first segment (root globs are
    refused anyway) and at most five levels."""
    if _HEX.match(parts[idx]) is None:
        return []
    out: list[int] = []
    j = idx - 1
    while j >= 2 and len(out) < _MAX_FAN_OUT and _FAN_OUT.fullmatch(parts[j]):
        out.append(j)
        j -= 1
    return out


def proc_rule(parts: list[str], idx: int) -> str | None:
    """Rule name when ``parts[idx]`` is a pid/tid/fd/mapping under /proc, else None.

    ``parts`` is the path split on ``/`` (``parts[0]`` is empty for absolute paths).
    """
    seg = parts[idx]
    parent = parts[idx - 1]
    if seg.isdigit() and parent in _PROC_NUMERIC_PARENTS:
        return f"/proc {parent}/<n>"
    if parent == "map_files" and _ADDR_RANGE.fullmatch(seg):
        return "/proc map_files range"
    return None


def layer_rule(parts: list[str], idx: int) -> str | None:
    """Children of container layer stores are ids (possibly short ones, ``8a0a50ee00``)."""
    if parts[idx - 1] in _LAYER_PARENTS and idx >= 3 and any(c.isdigit() for c in parts[idx]):
        return "container layer id"
    return None
