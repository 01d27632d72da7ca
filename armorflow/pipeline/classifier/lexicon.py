"""What stable file names look like: a word list and a character trigram model.

Both are learned from Debian package file lists, so "is this a real word" and "how
likely is this character sequence in a real file name" come from data, not from a
hand-written dictionary.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from armorflow.pipeline.classifier.segments import alnum_runs, atoms

#: Characters kept as themselves by the trigram model; everything else maps to ``#``.
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_BOS, _EOS = "^", "$"
#: Bound on each memo below (it starts over past it): random names never recur, so a
#: larger memo only holds memory that grows with the events seen.
_CACHE_MAX = 8_192


def _norm(s: str) -> str:
    return "".join(c if c in _KEEP else "#" for c in s.lower())


def _is_hashlike(word: str) -> bool:
    """Hex runs with digits (cursor names, build-ids) are not words even in packages."""
    return len(word) >= 8 and any(c.isdigit() for c in word) and all(
        c in "0123456789abcdef" for c in word
    )


class Lexicon:
    """Word set plus add-k smoothed character trigram log-probabilities."""

    def __init__(self, words: Iterable[str], trigrams: dict[str, int], bigrams: dict[str, int]):
        self.words = frozenset(words)
        self.trigrams = trigrams
        self.bigrams = bigrams
        self._vocab = 40.0
        self._k = 0.1
        #: Spans of one segment share their surroundings; memoise the word split.
        self._cover_cache: dict[str, tuple[float, int]] = {}
        self._lm_cache: dict[str, float] = {}

    def is_word(self, w: str) -> bool:
        return w in self.words

    def cover(self, s: str) -> tuple[float, int]:
        """Best split of ``s`` into known words (>= 3 letters): the share of its letters
        that the split explains, and the longest stretch it leaves unexplained.

        ``pinephone`` -> (1.0, 0); ``environlgn0d6v8`` -> (~0.64, 8).
        """
        hit = self._cover_cache.get(s)
        if hit is not None:
            return hit
        if len(self._cover_cache) > _CACHE_MAX:
            self._cover_cache.clear()
        low = s.lower()
        n = len(low)
        words = self.words
        best = [0] * (n + 1)
        step = [1] * (n + 1)  # length of the word (or 1 for a skipped char) ending at i
        for i in range(1, n + 1):
            b, k_best = best[i - 1], 1
            for k in range(3, min(i, 16) + 1):
                if best[i - k] + k > b and low[i - k : i] in words:
                    b, k_best = best[i - k] + k, k
            best[i], step[i] = b, k_best
        longest = run = 0
        i = n
        while i > 0:
            if step[i] == 1 and not (best[i] > best[i - 1]):
                run += 1 if low[i - 1].isalnum() else 0
                longest = max(longest, run)
            else:
                run = 0
            i -= step[i]
        letters = sum(1 for c in low if c.isalpha())
        out = (min(1.0, best[n] / letters) if letters else 0.0), longest
        self._cover_cache[s] = out
        return out

    def mean_logprob(self, s: str) -> float:
        """Average log P(c | two previous chars) over ``s`` with start/end markers."""
        hit = self._lm_cache.get(s)
        if hit is not None:
            return hit
        if len(self._lm_cache) > _CACHE_MAX:
            self._lm_cache.clear()
        t = _BOS + _BOS + _norm(s) + _EOS
        tri, bi = self.trigrams, self.bigrams
        k, v = self._k, self._vocab
        total = 0.0
        for i in range(2, len(t)):
            ctx = t[i - 2 : i]
            total += math.log((tri.get(ctx + t[i], 0) + k) / (bi.get(ctx, 0) + k * v))
        out = self._lm_cache[s] = total / (len(t) - 2)
        return out

    def to_json(self) -> dict[str, object]:
        return {"words": sorted(self.words), "trigrams": self.trigrams, "bigrams": self.bigrams}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Lexicon:
        words = data["words"]
        tri = data["trigrams"]
        bi = data["bigrams"]
        assert isinstance(words, list) and isinstance(tri, dict) and isinstance(bi, dict)
        return cls(words, tri, bi)

    @classmethod
    def build(cls, segments: Iterable[str], min_trigram: int = 2) -> Lexicon:
        """Learn the word list and trigram counts from stable path segments."""
        words: set[str] = set()
        tri: Counter[str] = Counter()
        for seg in segments:
            for start, end in alnum_runs(seg):
                word = seg[start:end].lower()
                if _is_hashlike(word):
                    continue
                words.add(word)
                words.update(a for a in atoms(word) if len(a) >= 2 and not a.isdigit())
            t = _BOS + _BOS + _norm(seg) + _EOS
            for i in range(2, len(t)):
                tri[t[i - 2 : i + 1]] += 1
        kept = {g: c for g, c in tri.items() if c >= min_trigram}
        bi: Counter[str] = Counter()
        for g, c in kept.items():
            bi[g[:2]] += c
        return cls(words, dict(sorted(kept.items())), dict(sorted(bi.items())))
