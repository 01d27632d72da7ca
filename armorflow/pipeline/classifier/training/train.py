"""``armorflow classifier train``: gather data, fit the span model, write the model file.

Reproducible: package splits are hashes of package names, every generator draws from
one seeded RNG, scikit-learn gets a fixed ``random_state``, and the gzip has no mtime.
The same machine (same package lists) therefore gives a byte-identical model file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from armorflow.pipeline.classifier.features import span_features, word_features
from armorflow.pipeline.classifier.lexicon import Lexicon
from armorflow.pipeline.classifier.rules import segment_rule
from armorflow.pipeline.classifier.segments import alnum_runs, candidate_spans
from armorflow.pipeline.classifier.span_model import FORMAT_VERSION, SpanModel
from armorflow.pipeline.classifier.training.corpus import (
    DPKG_INFO,
    paths_of,
    prefix_words,
    segments_of,
)
from armorflow.pipeline.classifier.training.families import FAMILIES, segment_labels
from armorflow.pipeline.classifier.training.generators import MODEL_GENERATORS, Labelled
from armorflow.pipeline.classifier.trees import Ensemble

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 20250528
    #: ``generators``: the segment generators of ``generators.MODEL_GENERATORS`` (the
    #: shipped model); ``families``: the path templates of ``families.FAMILIES``.
    corpus: str = "generators"
    random_per_generator: int = 4000
    #: Random paths drawn per family (its generators in turn), ``families`` corpus only.
    random_per_family: int = 4000
    #: Families left out (leave-one-family-out evaluation, ``heldout.py``).
    exclude_families: tuple[str, ...] = ()
    max_stable_segments: int = 60000
    word_rounds: int = 100
    span_rounds: int = 150
    #: Weight of a stable segment in the threshold search (see STABLE_WEIGHT).
    stable_weight: float = 12.0
    info_dir: Path = DPKG_INFO


def _fit(
    xs: list[list[float]], ys: list[int], seed: int, rounds: int
) -> tuple[Ensemble, list[float]]:
    """Fit boosted trees; return the exported ensemble and its scores on the rows."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.int64)
    clf = HistGradientBoostingClassifier(
        max_iter=rounds,
        max_leaf_nodes=31,
        learning_rate=0.15,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )
    clf.fit(x, y)
    return Ensemble.from_sklearn(clf), clf.predict_proba(x)[:, 1].tolist()


def _word_rows(
    segments: Sequence[Labelled], lex: Lexicon, probe: SpanModel
) -> tuple[list[list[float]], list[int]]:
    """One row per alphanumeric word; 1 when it holds a random part worth a span search.

    That is 4+ random characters or half the word: ``performance3225550694`` (a long
    prefix glued to a Go MkdirTemp number) must pass the gate as much as ``04Ha0a``.
    """
    xs: list[list[float]] = []
    ys: list[int] = []
    for seg, spans in segments:
        if not spans and probe.obviously_stable(seg):
            continue  # inference never scores these
        for a, b in alnum_runs(seg):
            inside = sum(max(0, min(b, j) - max(a, i)) for i, j in spans)
            xs.append(word_features(seg[a:b], lex))
            ys.append(1 if inside >= 4 or inside * 2 >= b - a else 0)
    return xs, ys


def _memo(fn: Callable[[str], float]) -> Callable[[str], float]:
    """Per-segment memo of word scores (spans of one segment share their words)."""
    cache: dict[str, float] = {}

    def score(w: str) -> float:
        if w not in cache:
            cache[w] = fn(w)
        return cache[w]

    return score


def _span_rows(
    segments: Sequence[Labelled], lex: Lexicon, probe: SpanModel
) -> tuple[list[list[float]], list[int], list[int]]:
    """One row per candidate span; label 1 only for the true span. ``groups`` = segment index."""
    xs: list[list[float]] = []
    ys: list[int] = []
    groups: list[int] = []
    for g, (seg, spans) in enumerate(segments):
        if not spans and probe.obviously_stable(seg):
            continue
        truth = spans[0] if len(spans) == 1 else None
        score = _memo(probe.word_score)
        candidates = probe.spans_to_rank(seg)
        if not candidates:
            # Gated out: inference calls it stable. Keep a marker row so that the
            # threshold search counts the segment (as a miss when it had a random span).
            xs.append([])
            ys.append(0)
            groups.append(g if not spans else -g - 1)
            continue
        for i, j in candidates:
            xs.append(span_features(seg, i, j, lex, score))
            ys.append(1 if (i, j) == truth else 0)
            groups.append(g)
    return xs, ys, groups


#: A stable name turned into a glob widens a profile; a missed random name only costs an
#: extra rule. The threshold search counts a stable segment this many times.
STABLE_WEIGHT = 12.0


def _pick_threshold(
    scores: list[float], ys: list[int], groups: list[int], stable_weight: float = STABLE_WEIGHT
) -> float:
    """Threshold maximising segment-level exactness, weighting stable segments by STABLE_WEIGHT.

    """
    best_by_group: dict[int, tuple[float, int]] = {}
    has_truth: dict[int, bool] = {}
    for s, y, g in zip(scores, ys, groups, strict=True):
        has_truth[g] = has_truth.get(g, False) or y == 1 or g < 0
        if g not in best_by_group or s > best_by_group[g][0]:
            best_by_group[g] = (s, y)
    best_t, best_v = 0.5, -1.0
    for k in range(5, 100):
        t = k / 100
        v = 0.0
        for g, (s, y) in best_by_group.items():
            if has_truth[g]:
                v += 1.0 if (s >= t and y == 1) else 0.0
            else:
                v += stable_weight if s < t else 0.0
        if v > best_v:
            best_t, best_v = t, v
    return best_t


def _family_rows(
    families: list[str], per_family: int, rng: random.Random, words: list[str], lex: Lexicon
) -> tuple[list[Labelled], set[str]]:
    """Random segments drawn from the families' templates, and the stable segments around
    them. A random segment is kept for the model only when the model decides it at run
    time and can mark it: not settled by a format rule (uuid, hex, kubelet dirs), not
    taken as stable by the lexicon short-cut (short numbers: ``name.log.3``), and its
    random span is one of the candidate spans (4+ characters, no dot)."""
    untrained = Ensemble([], 0.0)
    probe = SpanModel(word=untrained, span=untrained, gate=1.0, threshold=1.0, lexicon=lex)
    rows: list[Labelled] = []
    stable: set[str] = set()
    for fam in families:
        gens = [FAMILIES[fam][g] for g in sorted(FAMILIES[fam])]
        for k in range(per_family):
            template = gens[k % len(gens)](rng, words)
            for seg, spans in segment_labels(template.draw(rng)):
                if not spans:
                    stable.add(seg)
                elif (
                    len(spans) == 1
                    and segment_rule(seg) is None
                    and not probe.obviously_stable(seg)
                    and spans[0] in candidate_spans(seg, lex.is_word)
                ):
                    rows.append((seg, spans))
    return rows, stable


def train(cfg: TrainConfig = TrainConfig()) -> SpanModel:
    rng = random.Random(cfg.seed)
    lex_paths = paths_of("lexicon", cfg.info_dir)
    fit_paths = paths_of("fit", cfg.info_dir)
    if not lex_paths or not fit_paths:
        raise RuntimeError(f"no Debian package lists under {cfg.info_dir}")
    lex_segments = segments_of(lex_paths)
    fit_segments = segments_of(fit_paths)
    log.info("stable segments: %d lexicon, %d fit", len(lex_segments), len(fit_segments))

    # Features during fitting use a lexicon that has never seen the fit packages, so
    # unknown-but-stable names look to the model the way unseen packages will later.
    lex = Lexicon.build(lex_segments)
    words = prefix_words(fit_segments)
    stable = list(fit_segments)
    rng.shuffle(stable)
    labelled: list[Labelled] = [(s, []) for s in stable[: cfg.max_stable_segments]]
    untrained = Ensemble([], 0.0)
    families: list[str] = []
    if cfg.corpus == "generators":
        for name in sorted(MODEL_GENERATORS):
            gen = MODEL_GENERATORS[name]
            labelled.extend(gen(rng, words) for _ in range(cfg.random_per_generator))
    elif cfg.corpus == "families":
        families = [f for f in sorted(FAMILIES) if f not in cfg.exclude_families]
        random_rows, seen_stable = _family_rows(
            families, cfg.random_per_family, rng, words, lex
        )
        known = {s for s, _ in labelled}
        labelled.extend((s, []) for s in sorted(seen_stable - known))
        labelled.extend(random_rows)
        log.info("families %s: %d random segments", ",".join(families), len(random_rows))
    else:
        raise ValueError(f"unknown corpus {cfg.corpus!r} (generators or families)")

    probe = SpanModel(word=untrained, span=untrained, gate=1.0, threshold=1.0, lexicon=lex)
    wx, wy = _word_rows(labelled, lex, probe)
    word, word_scores = _fit(wx, wy, cfg.seed, cfg.word_rounds)
    positives = sorted(s for s, y in zip(word_scores, wy, strict=True) if y)
    # Gate low enough to let 99.5% of random words through to the span model.
    gate = round(min(0.5, positives[len(positives) // 200]), 4)
    log.info("word rows: %d (%d random), gate %.4f", len(wy), sum(wy), gate)

    probe = SpanModel(word=word, span=untrained, gate=gate, threshold=1.0, lexicon=lex)
    sx, sy, groups = _span_rows(labelled, lex, probe)
    rows = [(x, y, g) for x, y, g in zip(sx, sy, groups, strict=True) if x]
    span, span_scores = _fit(
        [r[0] for r in rows], [r[1] for r in rows], cfg.seed, cfg.span_rounds
    )
    markers = [(0.0, y, g) for x, y, g in zip(sx, sy, groups, strict=True) if not x]
    all_scores = span_scores + [m[0] for m in markers]
    all_ys = [r[1] for r in rows] + [m[1] for m in markers]
    all_groups = [r[2] for r in rows] + [m[2] for m in markers]
    threshold = _pick_threshold(all_scores, all_ys, all_groups, cfg.stable_weight)
    log.info("span rows: %d (%d true), threshold %.2f", len(rows), sum(sy), threshold)

    proc_self = Path("/proc/self")
    proc_entries = frozenset(os.listdir(proc_self)) if proc_self.is_dir() else frozenset()
    model = SpanModel(
        word=word,
        span=span,
        gate=gate,
        threshold=threshold,
        # Ship the lexicon the models were fitted with: a bigger one would shift the
        # features (more random strings "covered" by short words) away from training.
        lexicon=lex,
        proc_entries=proc_entries,
        meta={
            "seed": cfg.seed,
            "word_rows": len(wy),
            "span_rows": len(rows),
            "segments": len(labelled),
            "lexicon_words": len(lex.words),
            **(
                {
                    "generators": sorted(MODEL_GENERATORS),
                    "random_per_generator": cfg.random_per_generator,
                }
                if cfg.corpus == "generators"
                else {
                    "families": families,
                    "generators": sorted(g for f in families for g in FAMILIES[f]),
                    "random_per_family": cfg.random_per_family,
                }
            ),
        },
    )
    digest = hashlib.sha256(json.dumps(model.to_json(), sort_keys=True).encode()).hexdigest()
    model.version = f"{FORMAT_VERSION}.{digest[:12]}"
    return model
