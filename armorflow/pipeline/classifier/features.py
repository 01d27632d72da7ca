"""Feature vectors for the two linear models: one alphanumeric word, one candidate span.

Pure Python on purpose: a word is a handful of characters, and building a numpy array
per word would cost more than the arithmetic. The same functions feed training
(scikit-learn) and inference (a dot product), so the two can never drift apart.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from armorflow.pipeline.classifier.lexicon import Lexicon
from armorflow.pipeline.classifier.segments import (
    DELIM,
    DIGIT,
    LOWER,
    UPPER,
    alnum_runs,
    atoms,
    char_class,
)

_HEX = frozenset("0123456789abcdefABCDEF")
_VOWELS = frozenset("aeiouyAEIOUY")

WORD_FEATURES: tuple[str, ...] = (
    "log_len",
    "frac_digit",
    "frac_upper",
    "all_digit",
    "long_digit",
    "date_like",
    "hex_mixed",
    "transitions_per_char",
    "lm_logprob",
    "lm_x_len",
    "in_lexicon",
    "known_letter_cover",
    "vowel_frac",
    "inner_upper",
    "entropy_norm",
    "consonant_run",
    "digit_groups",
    "break_cover",
    "uncovered_run",
    "max_digit_run",
)

SPAN_FEATURES: tuple[str, ...] = (
    "log_len",
    "frac_of_segment",
    "frac_delim",
    "whole_segment",
    "has_prefix",
    "prefix_ends_delim",
    "glued_to_prefix",
    "has_suffix",
    "suffix_starts_delim",
    "glued_to_suffix",
    "suffix_known",
    "inside_min",
    "inside_mean",
    "outside_max",
    "glued_prefix_score",
    "glued_suffix_score",
    "span_lm",
    "span_in_lexicon",
    "head_known",
    "tail_known",
    "span_cover",
    "joined_cover",
    "joined_uncovered_run",
)


def _date_like(w: str) -> bool:
    """YYYYMMDD or YYYYMMDDhhmm[ss] (library versions like ``.so.20220623``)."""
    if len(w) not in (8, 12, 14) or not w.isdigit():
        return False
    year, month, day = int(w[:4]), int(w[4:6]), int(w[6:8])
    return 1990 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31


def word_features(w: str, lex: Lexicon) -> list[float]:
    n = len(w)
    digits = upper = lower = transitions = 0
    prev = -1
    consonants = max_consonants = 0
    for c in w:
        k = char_class(c)
        if k == DIGIT:
            digits += 1
        elif k == UPPER:
            upper += 1
        elif k == LOWER:
            lower += 1
        if prev >= 0 and k != prev:
            transitions += 1
        prev = k
        if k != DIGIT and c not in _VOWELS:
            consonants += 1
            max_consonants = max(max_consonants, consonants)
        else:
            consonants = 0
    letters = upper + lower
    low = w.lower()
    parts = atoms(w)
    known = sum(len(a) for a in parts if not a.isdigit() and len(a) >= 3 and lex.is_word(a.lower()))
    freq = Counter(w)
    entropy = -sum(v / n * math.log2(v / n) for v in freq.values())
    lm = lex.mean_logprob(w)
    cover, uncovered = lex.cover(w)
    return [
        math.log(n),
        digits / n,
        upper / n,
        1.0 if digits == n else 0.0,
        1.0 if digits == n and n >= 6 else 0.0,
        1.0 if _date_like(w) else 0.0,
        1.0 if digits and letters and all(c in _HEX for c in w) else 0.0,
        transitions / n,
        lm,
        lm * math.log(n),
        1.0 if lex.is_word(low) else 0.0,
        known / letters if letters else 0.0,
        sum(1 for c in w if c in _VOWELS) / letters if letters else 0.0,
        1.0 if upper and lower and not w[1:].islower() and not w.isupper() else 0.0,
        entropy / math.log2(n) if n > 1 else 0.0,
        max_consonants / n,
        float(sum(1 for a in parts if a.isdigit())),
        cover,
        float(uncovered),
        float(max((len(a) for a in parts if a.isdigit()), default=0)),
    ]


WordScore = Callable[[str], float]


def _piece_scores(text: str, score: WordScore) -> list[float]:
    return [score(text[a:b]) for a, b in alnum_runs(text)]


def _known_affix(text: str, lex: Lexicon) -> float:
    """1 when every alphanumeric word of a suffix is a known word (or a short number)."""
    for start, end in alnum_runs(text):
        w = text[start:end].lower()
        if not (lex.is_word(w) or (w.isdigit() and len(w) <= 4)):
            return 0.0
    return 1.0


def _head_known(span: str, lex: Lexicon) -> float:
    """Share of the span taken by a known word at its start that leaves >= 3 characters.

    A span that starts with ``php`` or ``umount`` probably should have started later.
    """
    runs = alnum_runs(span)
    if not runs:
        return 0.0
    a, b = runs[0]
    w = span[a:b].lower()
    for k in range(min(len(w) - 3, 24), 2, -1):
        if lex.is_word(w[:k]):
            return k / len(span)
    return 0.0


def _tail_known(span: str, lex: Lexicon) -> float:
    """Same as :func:`_head_known` for a known word at the end of the span."""
    runs = alnum_runs(span)
    if not runs:
        return 0.0
    a, b = runs[-1]
    w = span[a:b].lower()
    for k in range(min(len(w) - 3, 24), 2, -1):
        if lex.is_word(w[-k:]):
            return k / len(span)
    return 0.0


def _joined(seg: str, i: int, j: int) -> str:
    """The span together with the alphanumerics glued to either side of it."""
    while i > 0 and seg[i - 1].isalnum():
        i -= 1
    while j < len(seg) and seg[j].isalnum():
        j += 1
    return seg[i:j]


def span_features(seg: str, i: int, j: int, lex: Lexicon, score: WordScore) -> list[float]:
    """Features of "``seg[i:j]`` is the random part", given a per-word randomness score."""
    span = seg[i:j]
    n = len(span)
    prefix, suffix = seg[:i], seg[j:]
    inside = _piece_scores(span, score) or [0.0]
    outside = _piece_scores(prefix, score) + _piece_scores(suffix, score)
    glued_pre = i > 0 and char_class(seg[i - 1]) != DELIM and char_class(span[0]) != DELIM
    glued_suf = j < len(seg) and char_class(seg[j]) != DELIM and char_class(span[-1]) != DELIM
    pre_runs = alnum_runs(prefix)
    suf_runs = alnum_runs(suffix)
    joined_cover, joined_uncovered = lex.cover(_joined(seg, i, j))
    return [
        math.log(n),
        n / len(seg),
        sum(1 for c in span if char_class(c) == DELIM) / n,
        1.0 if i == 0 and j == len(seg) else 0.0,
        1.0 if i > 0 else 0.0,
        1.0 if i > 0 and char_class(seg[i - 1]) == DELIM else 0.0,
        1.0 if glued_pre else 0.0,
        1.0 if j < len(seg) else 0.0,
        1.0 if j < len(seg) and char_class(seg[j]) == DELIM else 0.0,
        1.0 if glued_suf else 0.0,
        _known_affix(suffix, lex) if suffix else 0.0,
        min(inside),
        sum(inside) / len(inside),
        max(outside) if outside else 0.0,
        score(prefix[pre_runs[-1][0] : pre_runs[-1][1]]) if glued_pre and pre_runs else 0.0,
        score(suffix[suf_runs[0][0] : suf_runs[0][1]]) if glued_suf and suf_runs else 0.0,
        lex.mean_logprob(span),
        1.0 if lex.is_word(span.lower()) else 0.0,
        _head_known(span, lex),
        _tail_known(span, lex),
        lex.cover(span)[0],
        joined_cover,
        float(joined_uncovered),
    ]
