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
#: A run of 7+ digits: pids (up to 4194304), database object ids, zero-padded sequence
#: numbers (nginx temp files ``0000000012``), epoch seconds and minutes. Shorter runs are
#: stable names too often (``x25519``, ``mc146818rtc``, ``python3.11``).
_LONG_NUMBER = re.compile(r"(?<![0-9])[0-9]{7,}(?![0-9])")
#: ... except a date (and time) right after a letter or a dot: a release stamp of a
#: versioned name (``jetty-http-9.4.57.v20241219.jar``, ``libabsl_base.so.20220623``).
#: Without it 187 of the 129,053 package paths of the corpus changed; with it 3 do
#: (``CIF_A62634068.crt``, ``PA12203001``).
_VERSION_STAMP = re.compile(
    r"(?<=[A-Za-z.])(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[0-9]{2}){0,3}"
)
#: A name that starts with a number of 5-6 digits, alone or before a separator: a pid
#: (``hsperfdata_app/379064``), an object id (postgres ``base/16384/24576.1``,
#: ``24576_vm``). No package path of the 129,053 the corpus holds has such a name except
#: round numbers (perl's ``unicore/lib/Nv/10000.pl``), which people choose and generators
#: do not, so those stay.
_LEADING_ID = re.compile(r"[0-9]{5,6}(?=[._-]|$)")
_ROUND = re.compile(r"[1-9]0+")
#: Kubernetes' generated names (apimachinery util/rand: 27 characters, no vowels, no 0, 1,
#: 3): a ReplicaSet's pod-template hash (up to 10) then the pod's 5 (``web-7d4b9c8f5-x2kqz``),
#: or a CronJob's scheduled minute then the job pod's 5 (``backup-29637975-2mcmm``). A
#: lone 5-character piece is not enough (``systemd-fsckd``, ``git-remote-https``).
_K8S = "[bcdfghjklmnpqrstvwxz2456789]"
_K8S_POD = re.compile(rf"(?<=-)(?:{_K8S}{{6,10}}|[0-9]{{7,9}})-{_K8S}{{5}}(?=$|[_.])")


def generated_spans(seg: str) -> list[tuple[int, int]]:
    """Generated pieces a segment holds besides what the span model finds: long numbers,
    a leading id, Kubernetes' generated pod names (spans sorted, not overlapping)."""
    spans = [m.span() for m in _K8S_POD.finditer(seg)]
    lead = _LEADING_ID.match(seg)
    if lead is not None and not _ROUND.fullmatch(lead.group()):
        spans.append(lead.span())
    spans += [m.span() for m in _LONG_NUMBER.finditer(seg)
              if not any(i <= m.start() < j for i, j in spans)
              and _VERSION_STAMP.fullmatch(seg, *m.span()) is None]
    return sorted(spans)


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
