"""Run-time memo of the random-name templates the span model has already found.

A workload that creates temp files creates many names from one generator
(``tmpk3j_x9a1``, ``tmpq9om4894``, ...): same fixed prefix and suffix, a random middle
of the same length drawn from the same alphabet. Every one of them is a never-seen
segment, so the per-segment cache does not help, and a full span search costs
milliseconds. Once the model has put ``*`` on the same (prefix, middle length, suffix)
``CONFIRMATIONS`` times, later names of that shape reuse the decision after cheap checks
on the middle (its characters stay within the alphabet the model's middles used, it
shares neither its first nor its last three characters with a confirming middle, it
contains no known word, and an all-lowercase middle must still look random to the word
model). Anything that fails a check falls through to the full span search, so a template
only ever short-cuts decisions the model would most likely have made itself.

"Most likely" means a memo changes results: a name the model alone would give
``tmpr_*`` comes out ``tmp*`` once ``tmp`` + 8 random characters is a confirmed shape.
So a memo belongs to one stream of names: the pipeline keeps one per behaviour model
(``PathClassifier.scoped``), never one per process, and the model folds a glob that a
broader one of the same directory covers (``BehaviourModel.fold_subsumed``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

#: Model decisions with one shape needed before the shape is used as a short-cut.
CONFIRMATIONS = 2
#: Bound on remembered shapes (the memo starts over past it: bounded memory).
MAX_TEMPLATES = 4096
#: Names per generation of the memo of this stream's own results.
MAX_RESULTS = 32_768
#: A shape with no fixed prefix or suffix is only reused for middles at least this long:
#: short whole names of mixed letters and digits (``tvi955``, terminal names) are common
#: stable names, and a model false positive on one must not spread to its siblings.
MIN_BARE_MIDDLE = 16
#: Letter runs of at least this length that are known words make a middle not random.
_MIN_WORD = 4

#: Letter runs at least this long must not be (nearly) all known words glued together
#: (random alphabets rarely produce long letter runs; stable compound names often do).
_MIN_CHECKED_RUN = 7
_MAX_COVER = 0.9

_LETTERS = re.compile(r"[A-Za-z]+")


_ALNUM = re.compile(r"[A-Za-z0-9]+")


def _dashed_pieces(middle: str) -> bool:
    """Four or more pieces, three of them one or two characters (``ndr9500-25-mc-nl``): the shape of
    stable names built from short abbreviations (terminal names), not of a random token,
    whose rare delimiters seldom fall that close together."""
    runs = _ALNUM.findall(middle)
    return len(runs) >= 4 and sum(1 for r in runs if len(r) <= 2) >= 3


def _char_kind(c: str) -> str:
    """Alphabet bucket of one middle character: d(igit), l(ower), u(pper) or itself."""
    if "0" <= c <= "9":
        return "d"
    if "a" <= c <= "z":
        return "l"
    if "A" <= c <= "Z":
        return "u"
    return c


def _kinds_pattern(kinds: frozenset[str]) -> re.Pattern[str]:
    ranges = {"d": "0-9", "l": "a-z", "u": "A-Z"}
    body = "".join(ranges.get(k, re.escape(k)) for k in sorted(kinds))
    return re.compile(f"[{body}]+")


#: How many confirming middles' ends are kept per shape (bounded memory).
_MAX_ENDS = 3
#: Length of the middle ends compared (random middles share three characters rarely).
_END = 3


@dataclass
class _Shape:
    confirmations: int = 0
    kinds: frozenset[str] = frozenset()
    alphabet: re.Pattern[str] = field(default_factory=lambda: re.compile("(?!)"))
    #: First and last three characters of the confirming middles. Random middles almost
    #: never share them; a family of stable names the model got wrong (``tek4025-ex``,
    #: ``tek4027-ex``) does, so such a family neither confirms a shape nor reuses it.
    heads: set[str] = field(default_factory=set)
    tails: set[str] = field(default_factory=set)

    def related(self, middle: str) -> bool:
        return middle[:_END] in self.heads or middle[-_END:] in self.tails

    def add(self, middle: str) -> None:
        if self.related(middle):
            return
        kinds = self.kinds | {_char_kind(c) for c in middle}
        if kinds != self.kinds:
            self.kinds = kinds
            self.alphabet = _kinds_pattern(kinds)
        if len(self.heads) < _MAX_ENDS:
            self.heads.add(middle[:_END])
            self.tails.add(middle[-_END:])
        self.confirmations += 1


class TemplateMemo:
    """(segment length, prefix, suffix) -> the alphabet of model-confirmed random middles."""

    def __init__(
        self,
        is_word: Callable[[str], bool],
        looks_random: Callable[[str], bool],
        word_cover: Callable[[str], float],
        *,
        max_templates: int = MAX_TEMPLATES,
        max_results: int = MAX_RESULTS,
    ) -> None:
        self._is_word = is_word
        self.max_templates = max_templates
        #: name -> what this stream decided for it the first time it met it (two
        #: generations of at most ``max_results``): a name met again comes out the same,
        #: whatever the memo has learned since.
        self.max_results = max_results
        self._results: dict[str, str] = {}
        self._old_results: dict[str, str] = {}
        #: Share of a letter run that known words explain (``ntconsole`` -> 1.0).
        self._word_cover = word_cover
        #: The word model's gate; called only for all-lowercase middles (could be a word).
        self._looks_random = looks_random
        self._shapes: dict[tuple[int, str, str], _Shape] = {}
        #: segment length -> prefix lengths of shapes of that length (few per length).
        self._prefix_lens: dict[int, set[int]] = {}
        #: segment length -> suffix lengths of shapes of that length.
        self._suffix_lens: dict[int, set[int]] = {}
        self.hits = 0

    def __len__(self) -> int:
        return len(self._shapes)

    def recall(self, seg: str) -> str | None:
        """What this stream decided for ``seg`` before (None: not met, or forgotten)."""
        hit = self._results.get(seg)
        if hit is None:
            hit = self._old_results.get(seg)
            if hit is not None:
                self.remember(seg, hit)
        return hit

    def remember(self, seg: str, result: str) -> None:
        if len(self._results) >= self.max_results:
            self._old_results, self._results = self._results, {}
        self._results[seg] = result

    def learn(self, seg: str, i: int, j: int) -> None:
        """The model put ``*`` on ``seg[i:j]``."""
        if len(self._shapes) >= self.max_templates:
            self._forget_unconfirmed()
        n = len(seg)
        if i == 0 and j == n and n < MIN_BARE_MIDDLE:
            return
        key = (n, seg[:i], seg[j:])
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = _Shape()
            self._prefix_lens.setdefault(n, set()).add(i)
            self._suffix_lens.setdefault(n, set()).add(n - j)
        shape.add(seg[i:j])

    def _forget_unconfirmed(self) -> None:
        """Make room: drop shapes seen once (most are one-off names); keep the confirmed
        ones unless they alone fill half the memo."""
        kept = {k: v for k, v in self._shapes.items() if v.confirmations >= CONFIRMATIONS}
        if len(kept) >= self.max_templates // 2:
            kept = {}
        self._shapes = kept
        self._prefix_lens = {}
        self._suffix_lens = {}
        for n, prefix, suffix in kept:
            self._prefix_lens.setdefault(n, set()).add(len(prefix))
            self._suffix_lens.setdefault(n, set()).add(len(suffix))

    def match(self, seg: str) -> tuple[int, int] | None:
        """The random span of ``seg`` if a confirmed shape fits it, else None."""
        n = len(seg)
        prefix_lens = self._prefix_lens.get(n)
        if not prefix_lens:
            return None
        # Snapshots: a caller on another thread may be learning a shape meanwhile.
        suffix_lens = tuple(self._suffix_lens.get(n, ()))
        best: tuple[int, int, int] | None = None
        shapes = self._shapes
        for i in tuple(prefix_lens):
            prefix = seg[:i]
            for k in suffix_lens:
                j = n - k
                if j - i < 1:
                    continue
                shape = shapes.get((n, prefix, seg[j:]))
                if shape is None or shape.confirmations < CONFIRMATIONS:
                    continue
                if best is None or shape.confirmations > best[2]:
                    best = (i, j, shape.confirmations)
        if best is None:
            return None
        i, j, _ = best
        middle = seg[i:j]
        shape = shapes.get((n, seg[:i], seg[j:]))
        if shape is None:
            return None
        if (
            not shape.alphabet.fullmatch(middle)
            or shape.related(middle)
            or (i == 0 and j == n and _dashed_pieces(middle))
            or not self._plausibly_random(middle, bare_start=i == 0)
        ):
            return None
        self.hits += 1
        return i, j

    def _plausibly_random(self, middle: str, *, bare_start: bool = False) -> bool:
        is_word = self._is_word
        for m in _LETTERS.finditer(middle):
            run = m.group()
            if len(run) < _MIN_WORD:
                continue
            low = run.lower()
            if is_word(low):
                return False
            # A shape with no fixed prefix, and a name that starts with a known word: the
            # word is a fixed part the confirming names did not have (``patchlist`` +
            # ``ZL2fkDJAE`` against a shape learned from ``UzzBXDGLuQaD8xwxx``), and only
            # the span search finds where it ends.
            if bare_start and m.start() == 0 and any(
                is_word(low[:k]) for k in range(len(low) - 1, _MIN_WORD - 1, -1)
            ):
                return False
            # Known words glued together (``ntconsole``) are a stable name, not noise.
            if len(run) >= _MIN_CHECKED_RUN and self._word_cover(run) >= _MAX_COVER:
                return False
        if middle.isalpha() and middle.islower():
            return self._looks_random(middle)
        return True
