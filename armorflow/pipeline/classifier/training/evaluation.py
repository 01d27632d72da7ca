"""Evaluation set built at run time, never from training rows.

Stable paths come from the packages held out of training (``split_of == "eval"``); random
names come from the generators with a fresh seed, from the real ``mktemp`` binary, and
from the live ``/proc`` of this machine. Each row carries the exact expected glob.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from armorflow.aaglob import escape_literal
from armorflow.pipeline.classifier.classifier import render
from armorflow.pipeline.classifier.training.corpus import (
    DPKG_INFO,
    is_content_addressed,
    paths_of,
    prefix_words,
    segments_of,
)
from armorflow.pipeline.classifier.training.generators import (
    ALL_GENERATORS,
    Labelled,
    real_mktemp,
)


@dataclass(frozen=True)
class Case:
    kind: str
    path: str
    expected: str


#: Where each kind of random name is found on real nodes.
_CONTEXTS: dict[str, tuple[str, ...]] = {
    "webpack": ("/app/static/js", "/usr/share/nginx/html/static/css", "/srv/www/assets"),
    "uuid4": ("/var/lib/kubelet/pods", "/var/lib/kubelet/plugins/kubernetes.io/csi/pv"),
    "k8s-atomic-writer": ("/var/run/secrets/kubernetes.io/serviceaccount",),
    "php-upload": ("/tmp", "/var/www/uploads"),
    "php-session": ("/var/lib/php/sessions",),
    "sha256": ("/var/lib/docker/containers", "/var/lib/containerd/io.containerd.content.v1"),
    "short-container-id": ("/var/lib/docker/image/overlay2/layerdb/mounts", "/run/runc"),
    "k8s-pod-name": ("/var/log/containers", "/run/pods"),
}
_DEFAULT_CONTEXTS = ("/tmp", "/var/tmp", "/dev/shm", "/run")


def _random_case(kind: str, lab: Labelled, rng: random.Random, leaves: Sequence[str]) -> Case:
    seg, spans = lab
    parent = rng.choice(_CONTEXTS.get(kind, _DEFAULT_CONTEXTS))
    path, expected = f"{parent}/{seg}", f"{escape_literal(parent)}/{render(seg, spans)}"
    if rng.random() < 0.3:  # something inside the random directory
        leaf = rng.choice(leaves)
        path, expected = f"{path}/{leaf}", f"{expected}/{escape_literal(leaf)}"
    return Case(kind, path, expected)


def _proc_cases(limit: int, rng: random.Random) -> list[Case]:
    """Real /proc entries of this machine's processes, with the pid/tid/fd convention."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    out: list[Case] = []
    pids = sorted(p for p in os.listdir(proc) if p.isdigit())
    rng.shuffle(pids)
    for pid in pids:
        base = proc / pid
        try:
            entries = sorted(os.listdir(base))
            out.extend(Case("proc", f"/proc/{pid}/{e}", f"/proc/*/{e}") for e in entries[:8])
            for sub in ("fd", "fdinfo", "task", "map_files"):
                for child in sorted(os.listdir(base / sub))[:3]:
                    out.append(Case("proc", f"/proc/{pid}/{sub}/{child}", f"/proc/*/{sub}/*"))
        except OSError:
            continue  # the process exited or is not ours to read
        if len(out) >= limit:
            break
    return out[:limit]


@dataclass
class Report:
    total: int = 0
    exact: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    exact_by_kind: Counter[str] = field(default_factory=Counter)
    stable_changed: int = 0
    stable_total: int = 0
    content_addressed_total: int = 0
    content_addressed_changed: int = 0
    misses: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.exact / self.total if self.total else 0.0

    @property
    def stable_changed_rate(self) -> float:
        return self.stable_changed / self.stable_total if self.stable_total else 0.0


def build_eval_set(
    seed: int | None = None,
    random_per_generator: int = 1000,
    stable_limit: int = 20000,
    info_dir: Path = DPKG_INFO,
) -> list[Case]:
    """Fresh cases; ``seed=None`` draws a seed from the OS (a new set on every run)."""
    rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(8)))
    stable_paths = paths_of("eval", info_dir)
    segments = segments_of(stable_paths)
    words = prefix_words(segments)
    leaves = [s for s in segments if not is_content_addressed(s)]
    cases: list[Case] = []
    sample = stable_paths if len(stable_paths) <= stable_limit else rng.sample(
        stable_paths, stable_limit
    )
    for p in sample:
        kind = "stable-content-addressed" if is_content_addressed(p) else "stable"
        cases.append(Case(kind, p, escape_literal(p)))
    for kind in sorted(ALL_GENERATORS):
        gen = ALL_GENERATORS[kind]
        cases.extend(
            _random_case(kind, gen(rng, words), rng, leaves) for _ in range(random_per_generator)
        )
    for lab in real_mktemp(random_per_generator):
        cases.append(_random_case("mktemp-binary", lab, rng, leaves))
    for lab in real_mktemp(random_per_generator // 2, "phpXXXXXX"):
        cases.append(_random_case("php-upload-binary", lab, rng, leaves))
    cases.extend(_proc_cases(random_per_generator, rng))
    return cases


def evaluate(
    cases: Sequence[Case], collapse: Callable[[str], str], keep_misses: int = 50
) -> Report:
    r = Report()
    for c in cases:
        got = collapse(c.path)
        ok = got == c.expected
        if c.kind == "stable-content-addressed":
            r.content_addressed_total += 1
            r.content_addressed_changed += got != c.expected
            continue  # digests are collapsed by design; reported on their own
        r.total += 1
        r.exact += ok
        r.by_kind[c.kind] += 1
        r.exact_by_kind[c.kind] += ok
        if c.kind == "stable":
            r.stable_total += 1
            r.stable_changed += not ok
        if not ok and len(r.misses) < keep_misses:
            r.misses.append((c.kind, c.path, got))
    return r


_SAFE = re.compile(r"[^\x20-\x7e]")


def format_report(r: Report) -> str:
    lines = [
        f"exact: {r.exact}/{r.total} = {r.accuracy:.4%}",
        f"stable package paths changed: {r.stable_changed}/{r.stable_total}"
        f" = {r.stable_changed_rate:.4%}",
        f"content-addressed package paths (digest names, collapsed by design):"
        f" {r.content_addressed_changed}/{r.content_addressed_total} collapsed",
    ]
    for kind in sorted(r.by_kind):
        n, ok = r.by_kind[kind], r.exact_by_kind[kind]
        lines.append(f"  {kind:22s} {ok:6d}/{n:<6d} {ok / n:8.3%}")
    for kind, path, got in r.misses:
        lines.append(f"  miss [{kind}] {_SAFE.sub('?', path)} -> {_SAFE.sub('?', got)}")
    return "\n".join(lines)
