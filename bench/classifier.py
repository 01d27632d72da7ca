"""Classifier benchmark: model load time, paths/s cold and warm, accuracy.

The evaluation set is built at run time (held-out package directories, real generators,
the real ``mktemp`` binary, this machine's /proc), never from training rows. Single
thread, timed in process CPU time, so the figures are per core.

    .venv/bin/python bench/classifier.py [--seed N] [--per-generator N] [--stable N]

stringlifier (vArmor's BiLSTM) is not run: it needs torch plus its weights from a model
hub, which this project's machines cannot fetch.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from collections.abc import Callable

from armorflow.pipeline.classifier import DEFAULT_MODEL_PATH, PathClassifier, SpanModel
from armorflow.pipeline.classifier.training.evaluation import (
    build_eval_set,
    evaluate,
    format_report,
)
from armorflow.pipeline.classifier.training.generators import ALNUM, PY_TEMP_CHARS

#: Random-name sources of a busy container, each name new (the streaming case).
_COLD_SOURCES: dict[str, Callable[[random.Random], str]] = {
    "python tempfile /tmp/tmpXXXXXXXX": lambda r: "/tmp/tmp" + _pick(r, PY_TEMP_CHARS, 8),
    "mktemp /tmp/tmp.XXXXXXXXXX": lambda r: "/tmp/tmp." + _pick(r, ALNUM, 10),
    "php upload /tmp/phpXXXXXX": lambda r: "/tmp/php" + _pick(r, ALNUM, 6),
    "40-hex dir": lambda r: "/var/cache/app/" + hashlib.sha1(r.randbytes(8)).hexdigest() + "/data",
    "php session": lambda r: "/var/lib/php/sessions/sess_"
    + _pick(r, "0123456789abcdefghijklmnopqrstuv", 26),
}


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def clock() -> float:
    # CPU time of this (single-threaded) process: the per-core figure, and unaffected by
    # whatever else shares the machine.
    return time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, default=None, help="eval-set seed (default: fresh)")
    ap.add_argument("--per-generator", type=int, default=1000)
    ap.add_argument("--stable", type=int, default=20000)
    ap.add_argument("--warm-rounds", type=int, default=5)
    ap.add_argument("--cold-random", type=int, default=20000,
                    help="fresh random names for the cold-random figure")
    args = ap.parse_args()

    t0 = clock()
    model = SpanModel.load(DEFAULT_MODEL_PATH)
    clf = PathClassifier(model)
    load_s = clock() - t0
    size = DEFAULT_MODEL_PATH.stat().st_size
    print(f"model {model.version}: {size / 1024:.0f} KiB, loaded in {load_s * 1000:.0f} ms")

    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    print(f"seed {args.seed} (rerun with --seed {args.seed})")
    cases = build_eval_set(args.seed, args.per_generator, args.stable)
    paths = [c.path for c in cases]
    segments = len({s for p in paths for s in p.split("/")})
    print(f"evaluation set: {len(paths)} paths, {segments} distinct segments")

    t0 = clock()
    for p in paths:
        clf.collapse(p)
    cold = clock() - t0
    print(f"cold (empty segment cache): {len(paths) / cold:,.0f} paths/s"
          f" ({cold / len(paths) * 1e6:.1f} us/path)")

    collapse = clf.collapse
    best = float("inf")
    for _ in range(args.warm_rounds):
        t0 = clock()
        for p in paths:
            collapse(p)
        best = min(best, clock() - t0)
    print(f"warm (segment cache filled): {len(paths) / best:,.0f} paths/s"
          f" ({best / len(paths) * 1e6:.2f} us/path, best of {args.warm_rounds})")

    # Cold random: every path carries a never-seen random name, the sources interleaved
    # as in a container running several of them at once; a fresh classifier.
    rng = random.Random(args.seed)
    sources = list(_COLD_SOURCES.values())
    fresh = [rng.choice(sources)(rng) for _ in range(args.cold_random)]
    cold_clf = PathClassifier(model)
    t0 = clock()
    for p in fresh:
        cold_clf.collapse(p)
    cold_random = clock() - t0
    print(f"cold random names ({len(fresh)} fresh paths, {len(_COLD_SOURCES)} sources"
          f" interleaved, empty caches): {len(fresh) / cold_random:,.0f} paths/s"
          f" ({cold_random / len(fresh) * 1e6:.1f} us/path;"
          f" {cold_clf.templates.hits} decided by a learned template)")

    print(format_report(evaluate(cases, clf.collapse, keep_misses=20)))

    # The same stable paths after the random names were seen first (templates learned
    # from them must not spread to stable names).
    stable_first = PathClassifier(model)
    ordered = [c for c in cases if not c.kind.startswith("stable")]
    ordered += [c for c in cases if c.kind.startswith("stable")]
    for c in ordered:
        stable_first.collapse(c.path)
    again = evaluate(ordered, stable_first.collapse)
    print(f"random names first, then stable: exact {again.accuracy:.4%},"
          f" stable changed {again.stable_changed}/{again.stable_total}"
          f" = {again.stable_changed_rate:.4%}")
    print("stringlifier: not run (torch + hub weights cannot be fetched here)")


if __name__ == "__main__":
    main()
