"""The span model the classifier ships: two tree ensembles plus the lexicon, gzipped JSON.

Both ensembles are gradient-boosted trees, trained with scikit-learn's
HistGradientBoostingClassifier (the ``train`` extra) and exported to plain lists by
:mod:`trees`:

* the word model scores each alphanumeric word of a segment ("how random is ``04Ha0a``");
  a segment whose words all score below ``gate`` is stable without further work;
* the span model ranks candidate spans of the remaining segments, using the word scores
  inside and around each span, and accepts the best one above ``threshold``.

JSON instead of pickle: loading it runs no code and it diffs; inference walks the trees
in plain Python and needs neither numpy nor scikit-learn at run time.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from armorflow.pipeline.classifier.features import (
    SPAN_FEATURES,
    WORD_FEATURES,
    span_features,
    word_features,
)
from armorflow.pipeline.classifier.lexicon import Lexicon
from armorflow.pipeline.classifier.segments import alnum_runs, atoms, candidate_spans
from armorflow.pipeline.classifier.trees import Ensemble

#: Bumped when the file layout or feature set changes; a model of another format is refused.
FORMAT_VERSION = 3
DEFAULT_MODEL_PATH = Path(__file__).with_name("span_model.json.gz")
#: Letter pieces of an unknown word shorter than this do not make it "known".
_MIN_KNOWN_ATOM = 3
#: Bound on remembered word scores (the dict starts over past it).
_WORD_CACHE_MAX = 8_192


@dataclass
class SpanModel:
    word: Ensemble
    span: Ensemble
    #: Segments whose every word scores below this are stable (no span search).
    gate: float
    #: The best span is accepted as random when its span score reaches this.
    threshold: float
    lexicon: Lexicon
    #: Names found in /proc/<pid>/ on the training machine (``mounts``, ``task``...).
    proc_entries: frozenset[str] = frozenset()
    version: str = "untrained"
    meta: dict[str, object] = field(default_factory=dict)
    #: Span searches run so far (the expensive cold path; tests bound it).
    searches: int = field(default=0, compare=False)
    _word_scores: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    def word_score(self, w: str) -> float:
        return self.word.prob(word_features(w, self.lexicon)) if w else 0.0

    def obviously_stable(self, seg: str) -> bool:
        """Every word is a known word or a short number: skip all scoring.

        This keeps the cold path cheap for the bulk of real paths (``nginx.conf``).
        """
        is_word = self.lexicon.is_word
        for start, end in alnum_runs(seg):
            w = seg[start:end].lower()
            if is_word(w) or (w.isdigit() and len(w) <= 4):
                continue
            parts = atoms(w)
            if len(parts) > 3:
                return False
            for a in parts:
                if a.isdigit():
                    if len(a) > 3:
                        return False
                elif len(a) < _MIN_KNOWN_ATOM or not is_word(a):
                    # One or two letters between digits (``tmp42g_tv9m``) explain
                    # nothing: random alphabets produce them all the time.
                    return False
        return True

    def spans_to_rank(self, seg: str) -> list[tuple[int, int]]:
        """Candidate spans that overlap a suspicious word and swallow no unsuspicious one.

        A word scored below the gate is part of the stable name, so a span containing
        it whole cannot be the random part; this prunes most candidates cheaply.
        """
        suspicious: list[tuple[int, int]] = []
        calm: list[tuple[int, int]] = []
        for a, b in alnum_runs(seg):
            (suspicious if self.word_score(seg[a:b]) >= self.gate else calm).append((a, b))
        if not suspicious:
            return []
        return [
            (i, j)
            for i, j in candidate_spans(seg, self.lexicon.is_word)
            if any(i < b and a < j for a, b in suspicious)
            and not any(i <= a and b <= j for a, b in calm)
        ]

    def best_span(self, seg: str) -> tuple[int, int, float] | None:
        """Highest-scoring candidate span, whatever its score (None if there is none)."""
        self.searches += 1
        spans = self.spans_to_rank(seg)
        if not spans:
            return None
        # Shared across segments: prefixes and extensions (``session``, ``log``) recur.
        cache = self._word_scores
        if len(cache) > _WORD_CACHE_MAX:
            cache.clear()

        def score(w: str) -> float:
            hit = cache.get(w)
            if hit is None:
                hit = cache[w] = self.word_score(w)
            return hit

        best: tuple[int, int, float] | None = None
        for i, j in spans:
            p = self.span.prob(span_features(seg, i, j, self.lexicon, score))
            if best is None or p > best[2]:
                best = (i, j, p)
        return best

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT_VERSION,
            "version": self.version,
            "word_features": list(WORD_FEATURES),
            "span_features": list(SPAN_FEATURES),
            "word": self.word.to_json(),
            "span": self.span.to_json(),
            "gate": self.gate,
            "threshold": self.threshold,
            "proc_entries": sorted(self.proc_entries),
            "meta": self.meta,
            "lexicon": self.lexicon.to_json(),
        }

    def save(self, path: Path) -> None:
        raw = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        # mtime=0 so that retraining with the same data gives a byte-identical file.
        path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL_PATH) -> SpanModel:
        data = json.loads(gzip.decompress(path.read_bytes()))
        if (
            data.get("format") != FORMAT_VERSION
            or data.get("word_features") != list(WORD_FEATURES)
            or data.get("span_features") != list(SPAN_FEATURES)
        ):
            raise ValueError(f"{path}: model format/features do not match this armorflow")
        return cls(
            word=Ensemble.from_json(data["word"]),
            span=Ensemble.from_json(data["span"]),
            gate=float(data["gate"]),
            threshold=float(data["threshold"]),
            lexicon=Lexicon.from_json(data["lexicon"]),
            proc_entries=frozenset(data["proc_entries"]),
            version=str(data["version"]),
            meta=dict(data["meta"]),
        )
