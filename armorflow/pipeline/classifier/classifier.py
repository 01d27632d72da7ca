"""PathClassifier: literal path -> AppArmor glob with random parts replaced by ``*``.

Order of decisions for each segment: tree conventions (/proc, /sys/devices, container
layer stores), then format rules (uuid, hex digests, kubelet dirs), then the span model.
Results are memoised per distinct segment (the model only ever looks at one segment), so
a pipeline that sees the same names again pays a dict lookup per segment.

The memo of random-name shapes (:mod:`templates`) is the one piece of history that can
change a result. The pipeline gives each model a memo of its own (:meth:`scoped`), so a
profile never depends on what a worker classified for other profiles before it, and the
process-wide memos above hold only results that no shape memo can change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import cast

from armorflow.aaglob import escape_literal
from armorflow.pipeline.classifier.rules import (
    fan_out_levels,
    generated_spans,
    layer_rule,
    proc_rule,
    segment_rule,
)
from armorflow.pipeline.classifier.span_model import DEFAULT_MODEL_PATH, SpanModel
from armorflow.pipeline.classifier.templates import MAX_RESULTS, MAX_TEMPLATES, TemplateMemo

#: Memo of segments the classifier kept as they are. They recur (library files, config
#: names), so they are worth a large memo, and their number grows with the distinct
#: behaviour of the workloads, not with the events. Past this many it starts over.
_STABLE_CACHE_MAX = 1 << 18
#: Segments per generation of the memo of collapsed segments. Those are mostly random
#: names that never come back, so that memo stays small: two generations, a full one
#: becoming the old one and the oldest dropped, a name found in the old one carried over.
#: Keyed by every random temp name, one memo would grow with the events a worker sees.
_COLLAPSED_CACHE_GENERATION = 32_768
#: A 1-2 hex digit directory (or a chain of them) right above a 16+ hex digit name.
_FAN_OUT_PATH = re.compile(r"/[0-9a-f]{1,2}/(?:[0-9a-f]{1,2}/)*[0-9a-fA-F]{16}")
#: Shapes one model's memo keeps (a window sees few generators; a bound per model keeps
#: thousands of open windows cheap).
MODEL_TEMPLATES = 256
#: Names per generation of one model's memo of its own results (two generations).
MODEL_RESULTS = 2048
#: Most ``*`` the generated pieces may put in one segment (with the span model's).
MAX_STARS = 2
#: First path components under which /proc and /sys conventions apply.
_CONTEXT_ROOTS = frozenset({"proc", "sys"})


@dataclass(frozen=True)
class Explanation:
    """Why one segment came out the way it did."""

    segment: str
    #: Name of the rule that decided, or ``"model"`` / ``"lexicon"`` / ``"literal"``.
    rule: str
    #: Model probability of the best random span (None when no model score was needed).
    score: float | None
    result: str
    #: What in the segment made the rule decide (the feature, span or shape), for people.
    detail: str = ""

    def describe(self) -> str:
        """One line: the rule, its score, what it saw (``--explain`` and the report)."""
        score = "" if self.score is None else f" score={self.score:.3f}"
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.rule}{score}{detail}"


#: What each named rule looks at, for explanations (rules.py and the tree conventions).
RULE_DETAILS: dict[str, str] = {
    "uuid": "an RFC 4122 UUID",
    "hex>=16": "a run of 16+ hex digits (digest or container id)",
    "k8s-atomic-writer-dir": "kubelet's atomic-writer directory ..YYYY_MM_DD_HH_MM_SS.<n>",
    "container layer id": "a child of a container layer store that holds a digit",
    "procfs <pid>": "a pid in front of a procfs entry name (procfs seen from elsewhere)",
    "/proc map_files range": "an address range under /proc/<pid>/map_files",
    "/sys/devices/** convention": "device topology differs per node",
    "hash fan-out dir": "a 1-2 hex digit directory level above a digest-named entry",
    "generated piece": "a run of 7+ digits, a name starting with a 5-6 digit id, or a"
                       " Kubernetes generated pod name (hash or minute, then 5 characters)",
}


def rule_detail(rule: str) -> str:
    """What a named rule looks at (pid/tid/fd rules read ``/proc <parent>/<n>``)."""
    if rule.startswith("/proc ") and rule.endswith("/<n>"):
        return f"a number under {rule.removeprefix('/proc ').removesuffix('/<n>')}/ in /proc"
    return RULE_DETAILS.get(rule, "")


def render(seg: str, spans: list[tuple[int, int]]) -> str:
    """Escape the literal pieces of ``seg`` and put ``*`` where the spans are."""
    out: list[str] = []
    pos = 0
    for i, j in spans:
        out.append(escape_literal(seg[pos:i]))
        out.append("*")
        pos = j
    out.append(escape_literal(seg[pos:]))
    return "".join(out)


class PathClassifier:
    def __init__(self, model: SpanModel, *, sys_devices_glob: bool = True) -> None:
        self.model = model
        #: Collapse everything below /sys/devices/ to ``/sys/devices/**`` (device topology
        #: differs per node; the kernel paths below it are not worth listing one by one).
        self.sys_devices_glob = sys_devices_glob
        #: Segments decided before any shape memo is asked (format rules, known words):
        #: the result no memo can change.
        self._cache: dict[str, str] = {}
        #: Segments the span model decided: (result, random span or None when it kept the
        #: segment). Asked after the caller's shape memo, which may know the shape better.
        self._collapsed: dict[str, tuple[str, tuple[int, int] | None]] = {}
        self._old_collapsed: dict[str, tuple[str, tuple[int, int] | None]] = {}
        #: Shapes of random names the model already decided (cheap cold path for the
        #: many names one generator produces; see :mod:`templates`), for callers that
        #: classify one stream of names (the CLI, the bench); models use :meth:`scoped`.
        self.templates = self.new_memo()

    @classmethod
    def load_default(cls) -> PathClassifier:
        """Same as the module-level :func:`load_default` (shared, cached instance)."""
        return load_default()

    def new_memo(
        self, max_templates: int = MAX_TEMPLATES, max_results: int = MAX_RESULTS
    ) -> TemplateMemo:
        """An empty memo of random-name shapes (and of its own results) for one stream."""
        model = self.model
        return TemplateMemo(
            model.lexicon.is_word,
            lambda w: model.word_score(w) >= model.gate,
            lambda w: model.lexicon.cover(w)[0],
            max_templates=max_templates,
            max_results=max_results,
        )

    def scoped(self) -> Callable[[str], str]:
        """``collapse`` with a shape memo of its own (one per behaviour model): what it
        learns from one profile's names never changes another profile's globs."""
        return partial(self.collapse_in, memo=self.new_memo(MODEL_TEMPLATES, MODEL_RESULTS))

    # -- one segment, no context ------------------------------------------------------
    def _before_memo(self, seg: str) -> Explanation | None:
        """The decision of the format rules and the lexicon, which no memo overrides."""
        if not seg:
            return Explanation(seg, "literal", None, seg)
        ruled = segment_rule(seg)
        if ruled is not None:
            name, spans = ruled
            return Explanation(seg, name, None, render(seg, spans), rule_detail(name))
        if self.model.obviously_stable(seg):
            return Explanation(
                seg, "lexicon", None, escape_literal(seg),
                "every word is a known file-name word or a short number",
            )
        return None

    def _decide(self, seg: str, memo: TemplateMemo | None) -> Explanation:
        early = self._before_memo(seg)
        if early is not None:
            return early
        if memo is not None:
            known = memo.match(seg)
            if known is not None:
                return _template_explanation(seg, known)
        explained, span = self._span_decision(seg)
        if span is not None and memo is not None:
            memo.learn(seg, *span)
        return explained

    def _span_decision(self, seg: str) -> tuple[Explanation, tuple[int, int] | None]:
        """The span model's decision (with the generated pieces it left, see
        :func:`rules.generated_spans`), and the span the model put ``*`` on (if any)."""
        explained, span = self._model_decision(seg)
        pieces = generated_spans(seg)
        if not pieces or (span is not None and all(
                span[0] <= i and j <= span[1] for i, j in pieces)):
            return explained, span
        spans: list[tuple[int, int]] = []
        for i, j in sorted([*pieces, *([span] if span is not None else [])]):
            # overlapping pieces, or pieces with only separators between them
            # (``<date>-<pid>``), are one random stretch
            if spans and (i <= spans[-1][1]
                          or not any(c.isalnum() for c in seg[spans[-1][1]:i])):
                spans[-1] = (spans[-1][0], max(j, spans[-1][1]))
            else:
                spans.append((i, j))
        if len(spans) > MAX_STARS:
            # A name of many numbers between words is crafted or a format nobody should
            # guess at; and each ``*`` multiplies the matcher's work (backtracking).
            return explained, span
        rule = "generated piece" if span is None else f"{explained.rule} + generated piece"
        detail = rule_detail("generated piece")
        if span is not None:
            detail = f"{explained.detail}; {detail}"
        return Explanation(seg, rule, explained.score, render(seg, spans), detail), span

    def _model_decision(self, seg: str) -> tuple[Explanation, tuple[int, int] | None]:
        """The span model's decision alone, and the span it put ``*`` on (if any)."""
        best = self.model.best_span(seg)
        if best is None:
            # No word scored random enough to be worth a span search.
            return Explanation(
                seg, "word-gate", None, escape_literal(seg),
                f"no word scored at or above the gate {self.model.gate:.3f}",
            ), None
        i, j, p = best
        span = f"best random span {seg[i:j]!r}"
        if p >= self.model.threshold:
            return Explanation(
                seg, "model", p, render(seg, [(i, j)]),
                f"{span} >= threshold {self.model.threshold:.3f}",
            ), (i, j)
        return Explanation(
            seg, "model", p, escape_literal(seg), f"{span} < threshold {self.model.threshold:.3f}"
        ), None

    def _segment(self, seg: str, memo: TemplateMemo | None) -> str:
        hit = self._cache.get(seg)
        if hit is not None:
            return hit
        if memo is not None:
            hit = memo.recall(seg)
            if hit is not None:
                return hit
        decided = self._collapsed.get(seg)
        if decided is None:
            decided = self._old_collapsed.get(seg)
            if decided is None:
                early = self._before_memo(seg)
                if early is not None:
                    if len(self._cache) >= _STABLE_CACHE_MAX:
                        self._cache.clear()
                    self._cache[seg] = early.result
                    return early.result
        # The stream's first meeting with this name: its memo goes first, as it would in
        # a process that never saw the name (the span model's decision may be cached
        # from another stream), so that a result never depends on other streams.
        result = None
        if memo is not None:
            known = memo.match(seg)
            if known is not None:
                result = render(seg, [known])
        if result is None:
            if decided is None:
                explained, span = self._span_decision(seg)
                decided = (explained.result, span)
            if len(self._collapsed) >= _COLLAPSED_CACHE_GENERATION:
                self._old_collapsed, self._collapsed = self._collapsed, {}
            self._collapsed[seg] = decided
            if memo is not None and decided[1] is not None:
                memo.learn(seg, *decided[1])
            result = decided[0]
        if memo is not None:
            memo.remember(seg, result)
        return result

    # -- context conventions ---------------------------------------------------------
    def _context_rule(self, parts: list[str], idx: int) -> str | None:
        if idx < 1 or not parts[idx]:
            return None
        if parts[1] == "proc" and idx >= 2:
            return proc_rule(parts, idx)
        if (
            parts[0] == ""
            and parts[1].isdigit()
            and len(parts) > 2
            and parts[2] in self.model.proc_entries
        ):
            # procfs mounted elsewhere or seen from a chroot: ``/10676/task/10676/...``.
            return "procfs <pid>" if idx == 1 else proc_rule(parts, idx)
        return layer_rule(parts, idx) if idx >= 3 else None

    def _sys_devices(self, parts: list[str]) -> bool:
        return (
            self.sys_devices_glob
            and len(parts) > 3
            and parts[0] == ""
            and parts[1] == "sys"
            and parts[2] == "devices"
            and any(parts[3:])
        )

    @staticmethod
    def _fan_out(parts: list[str], out: list[str]) -> str:
        """Glob the hash fan-out directories above digest-named entries (``rules``)."""
        for idx in range(len(parts) - 1, 1, -1):
            if out[idx].startswith("*") and len(parts[idx - 1]) <= 2:
                for j in fan_out_levels(parts, idx):
                    out[j] = "*"
        return "/".join(out)

    # -- public API ------------------------------------------------------------------
    def collapse(self, path: str) -> str:
        """The AppArmor glob for ``path`` (matches ``path``; random parts are ``*``),
        with the classifier's own shape memo (one stream of names: the CLI, the bench)."""
        return self.collapse_in(path, self.templates)

    def pure_collapse(self, path: str) -> str:
        """``collapse`` with no shape memo: a function of ``path`` alone."""
        return self.collapse_in(path, None)

    def collapse_in(self, path: str, memo: TemplateMemo | None) -> str:
        """``collapse`` with the given shape memo (None: none)."""
        parts = path.split("/")
        # Only these trees have context conventions; the substring test keeps the common
        # path (no context) at one C-level scan.
        if len(parts) > 2 and (
            parts[1] in _CONTEXT_ROOTS or parts[1].isdigit() or "/overlay" in path
        ):
            if self._sys_devices(parts):
                return "/sys/devices/**"
            out = []
            for idx, seg in enumerate(parts):
                if self._context_rule(parts, idx) is not None:
                    # Later context checks look at the raw parent name ("task"), not "*".
                    out.append("*")
                else:
                    out.append(self._segment(seg, memo))
        else:
            hits = list(map(self._cache.get, parts))
            if None not in hits:
                # Every segment kept as it is: no digest, so no fan-out either.
                return "/".join(cast(list[str], hits))
            seg_fn = self._segment
            out = [seg_fn(s, memo) for s in parts]
        # A digest-named entry below 1-2 hex digit directories: one regex scan to find out.
        if _FAN_OUT_PATH.search(path) is not None:
            return self._fan_out(parts, out)
        return "/".join(out)

    def explain(self, path: str) -> list[Explanation]:
        """One Explanation per non-empty segment (or one for the /sys/devices convention)."""
        return [e for e in self.explain_segments(path) if e.segment]

    def explain_segments(self, path: str) -> list[Explanation]:
        """One Explanation per ``/``-separated part of ``path``, empty ones included, so
        that index ``i`` explains segment ``i`` of the glob (the /sys/devices convention
        gives one Explanation for the whole path)."""
        parts = path.split("/")
        if self._sys_devices(parts):
            convention = "/sys/devices/** convention"
            return [
                Explanation(path, convention, None, "/sys/devices/**", rule_detail(convention))
            ]
        out: list[Explanation] = []
        for idx, seg in enumerate(parts):
            rule = self._context_rule(parts, idx) if len(parts) > 2 and seg else None
            if rule:
                out.append(Explanation(seg, rule, None, "*", rule_detail(rule)))
            else:
                out.append(self._decide(seg, self.templates))
        fan_out = "hash fan-out dir"
        for idx in range(len(parts) - 1, 1, -1):
            if out[idx].result.startswith("*"):
                for j in fan_out_levels(parts, idx):
                    out[j] = Explanation(parts[j], fan_out, None, "*", rule_detail(fan_out))
        return out


def _template_explanation(seg: str, span: tuple[int, int]) -> Explanation:
    i, j = span
    shape = f"learned shape: {len(seg)} characters, prefix {seg[:i]!r}, suffix {seg[j:]!r}"
    return Explanation(seg, "template", None, render(seg, [span]), shape)


@lru_cache(maxsize=1)
def load_default() -> PathClassifier:
    """The classifier with the model shipped in the package (loaded once per process)."""
    return PathClassifier(SpanModel.load(DEFAULT_MODEL_PATH))
