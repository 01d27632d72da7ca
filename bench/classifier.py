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
import time

from armorflow.pipeline.classifier import DEFAULT_MODEL_PATH, PathClassifier, SpanModel
from armorflow.pipeline.classifier.training.evaluation import (
    build_eval_set,
    evaluate,
    format_report,
)


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
    args = ap.parse_args()

    t0 = clock()
    model = SpanModel.load(DEFAULT_MODEL_PATH)
    clf = PathClassifier(model)
    load_s = clock() - t0
    size = DEFAULT_MODEL_PATH.stat().st_size
    print(f"model {model.version}: {size / 1024:.0f} KiB, loaded in {load_s * 1000:.0f} ms")

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

    print(format_report(evaluate(cases, clf.collapse, keep_misses=20)))
    print("stringlifier: not run (torch + hub weights cannot be fetched here)")


if __name__ == "__main__":
    main()
