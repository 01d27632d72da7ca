"""Generalisation: how the classifier does on names of software it was not trained on.

The rule (issue #16): the glob made from a sample path counts as right when it

1. matches a second sample of the same template (same stable pieces, new random ones),
2. and matches none of the sample's variants with one stable piece broken
   (:meth:`Template.broken`: the character next to the random part changed).

(It always matches the sample itself: the classifier's output is built from it.) A glob
that left a random part literal fails 1; one that swallowed a stable piece fails 2.

Leave-one-family-out (LOFO): for each family F, a model trained on every family but F
is scored on F's generators; F's names are then as new to it as a real program's names
are to the shipped model. The full training fits 60,000 stable segments and 4,000 random
names per family with 100 + 150 boosting rounds (about 5 minutes on one core); LOFO uses
:data:`LOFO_CONFIG`, the same pipeline and splits with fewer rows and rounds (about 30 s
of CPU per family), so that eleven models fit in one bench run. Its figures describe
those reduced models, not what a full-size training would do on a new family.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from armorflow.aaglob import glob_to_regex
from armorflow.pipeline.classifier.training.corpus import (
    DPKG_INFO,
    is_content_addressed,
    paths_of,
    prefix_words,
    segments_of,
)
from armorflow.pipeline.classifier.training.families import (
    FAMILIES,
    UNSEEN_FAMILIES,
    Template,
)
from armorflow.pipeline.classifier.training.train import TrainConfig


@dataclass(frozen=True)
class HeldOutCase:
    family: str
    generator: str
    path: str
    second: str
    broken: tuple[str, ...]


def family_cases(
    families: Iterable[str], seed: int, per_generator: int, info_dir: Path = DPKG_INFO
) -> list[HeldOutCase]:
    """Cases for ``families`` (of FAMILIES or UNSEEN_FAMILIES); prefixes are words of the
    held-out (``eval``) packages, so the stable pieces are not the words the training
    drew its prefixes from."""
    rng = random.Random(seed)
    words = prefix_words(segments_of(paths_of("eval", info_dir)))
    out: list[HeldOutCase] = []
    for fam in families:
        gens = FAMILIES[fam] if fam in FAMILIES else UNSEEN_FAMILIES[fam]
        for gen_name, gen in gens.items():
            for _ in range(per_generator):
                t: Template = gen(rng, words)
                first = t.draw(rng)
                second = t.draw(rng)
                if second[0] == first[0]:
                    second = t.draw(rng)
                out.append(HeldOutCase(fam, gen_name, first[0], second[0], tuple(t.broken(first))))
    return out


def judge(case: HeldOutCase, glob: str) -> bool:
    rx = glob_to_regex(glob)
    return rx.match(case.second) is not None and not any(
        rx.match(b) is not None for b in case.broken
    )


@dataclass
class HeldOutReport:
    by_generator: Counter[tuple[str, str]] = field(default_factory=Counter)
    ok_by_generator: Counter[tuple[str, str]] = field(default_factory=Counter)
    misses: list[tuple[str, str, str]] = field(default_factory=list)

    def family(self, fam: str) -> tuple[int, int]:
        n = sum(v for (f, _), v in self.by_generator.items() if f == fam)
        ok = sum(v for (f, _), v in self.ok_by_generator.items() if f == fam)
        return ok, n

    def families(self) -> list[str]:
        return sorted({f for f, _ in self.by_generator})

    def overall(self) -> float:
        """Mean over families of the family's share right (every family weighs the same)."""
        shares = [ok / n for ok, n in map(self.family, self.families()) if n]
        return sum(shares) / len(shares) if shares else 0.0


def score(
    cases: Sequence[HeldOutCase],
    collapse: Callable[[str], str],
    report: HeldOutReport | None = None,
    keep_misses: int = 3,
) -> HeldOutReport:
    r = report if report is not None else HeldOutReport()
    shown: Counter[str] = Counter()
    for c in cases:
        glob = collapse(c.path)
        key = (c.family, c.generator)
        r.by_generator[key] += 1
        if judge(c, glob):
            r.ok_by_generator[key] += 1
        elif shown[c.generator] < keep_misses:
            shown[c.generator] += 1
            r.misses.append((c.generator, c.path, glob))
    return r


def stable_changed(
    collapse: Callable[[str], str], limit: int, seed: int, info_dir: Path = DPKG_INFO
) -> tuple[int, int]:
    """(changed, total) over held-out package paths (``split_of == "eval"``, never used by
    training), content-addressed names (16+ hex digits, collapsed by design) left out."""
    from armorflow.aaglob import escape_literal

    paths = [p for p in paths_of("eval", info_dir) if not is_content_addressed(p)]
    rng = random.Random(seed)
    sample = paths if len(paths) <= limit else rng.sample(paths, limit)
    changed = sum(collapse(p) != escape_literal(p) for p in sample)
    return changed, len(sample)


#: The reduced training of one leave-one-family-out model (see the module docstring).
LOFO_CONFIG = TrainConfig(
    corpus="families",
    random_per_family=1500,
    max_stable_segments=25000,
    word_rounds=60,
    span_rounds=90,
)


def lofo_config(held_out: str, base: TrainConfig = LOFO_CONFIG) -> TrainConfig:
    return dataclasses.replace(base, exclude_families=(held_out,))


def format_report(
    r: HeldOutReport, baseline: HeldOutReport | None = None, label: str = "held out"
) -> str:
    lines = []
    head = f"  {'family':20s} {label:>18s}"
    if baseline is not None:
        head += f" {'shipped model':>18s}"
    lines.append(head)
    for fam in r.families():
        ok, n = r.family(fam)
        line = f"  {fam:20s} {ok:7d}/{n:<5d} {ok / n:6.1%}"
        if baseline is not None:
            bok, bn = baseline.family(fam)
            line += f" {bok:7d}/{bn:<5d} {bok / bn:6.1%}" if bn else ""
        lines.append(line)
    overall = f"  {'overall (mean)':20s} {r.overall():18.1%}"
    if baseline is not None:
        overall += f" {baseline.overall():18.1%}"
    lines.append(overall)
    return "\n".join(lines)


def format_generators(r: HeldOutReport, baseline: HeldOutReport | None = None) -> str:
    lines = []
    for (fam, gen), n in sorted(r.by_generator.items()):
        ok = r.ok_by_generator[(fam, gen)]
        line = f"    {fam:18s} {gen:26s} {ok:5d}/{n:<5d} {ok / n:6.1%}"
        if baseline is not None and baseline.by_generator[(fam, gen)]:
            b = baseline.ok_by_generator[(fam, gen)] / baseline.by_generator[(fam, gen)]
            line += f"   (shipped {b:6.1%})"
        lines.append(line)
    return "\n".join(lines)
