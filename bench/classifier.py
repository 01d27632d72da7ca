"""Classifier benchmark: generalisation to unseen software, model load, paths/s, accuracy.

Headline: leave-one-family-out (``training/heldout.py``). For each family of generators
(``training/families.py``: libc-mktemp, compilers, vcs, language-runtimes, web-servers,
databases, kubernetes, package-caches, log-rotation, browsers, system-services) a model
is trained without that family (reduced training, ``heldout.LOFO_CONFIG``, about half
a minute of CPU each; one training at a time) and scored on it: a glob is right when it
matches a second sample of the same generator and none of the path's variants with a
stable piece broken. Printed per family and overall (mean of the families), beside the
shipped model on the same cases, with the share of held-out package paths each LOFO model
changes. ``--lofo shipped`` scores the shipped model only (seconds); ``--lofo off`` skips.

The run-time evaluation set is built at run time (held-out package directories, real generators,
the real ``mktemp`` binary, this machine's /proc), never from training rows. Single
thread, timed in process CPU time, so the figures are per core.

    .venv/bin/python bench/classifier.py [--seed N] [--per-generator N] [--stable N]
        [--lofo full|shipped|off] [--heldout-per-generator N]
        [--stringlifier PYTHON|off] [--stringlifier-sample N]

Then, side by side with armorflow, stringlifier (the BiLSTM vArmor's classifier service
runs) as vArmor uses it: ``bench/stringlifier_driver.py`` runs in a side venv (torch +
stringlifier, made by ``make stringlifier``), gets the same evaluation cases (a sample
stratified by kind, ``--stringlifier-sample``, 0 for all) and collapses each path as
vArmor's classifier service does, and as its agent does (its own prefix rules first, the
service for the rest); all are scored against the same expected globs, armorflow with a
freshly loaded model and classifier on the same sample. ``--stringlifier`` names the side
venv's python (default: ``.venv-stringlifier/bin/python`` of this repository when it
exists; ``off`` skips the comparison).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from armorflow.aaglob import escape_literal, has_wildcard
from armorflow.pipeline.classifier import DEFAULT_MODEL_PATH, PathClassifier, SpanModel
from armorflow.pipeline.classifier.training import heldout
from armorflow.pipeline.classifier.training.evaluation import (
    Case,
    build_eval_set,
    evaluate,
    format_report,
)
from armorflow.pipeline.classifier.training.families import FAMILIES, UNSEEN_FAMILIES
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


_REPO = Path(__file__).resolve().parent.parent
_DRIVER = _REPO / "bench" / "stringlifier_driver.py"
_DEFAULT_STRINGLIFIER = _REPO / ".venv-stringlifier" / "bin" / "python"


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
    ap.add_argument("--stringlifier", metavar="PYTHON", default=None,
                    help="python of the side venv with stringlifier (make stringlifier);"
                    f" default {_DEFAULT_STRINGLIFIER.relative_to(_REPO)} if it exists;"
                    " 'off' to skip")
    ap.add_argument("--stringlifier-sample", type=int, default=8000, metavar="N",
                    help="evaluation cases given to stringlifier (~3 ms each), stratified"
                    " by kind; 0 for the whole set")
    ap.add_argument("--lofo", choices=("full", "shipped", "off"), default="full",
                    help="leave-one-family-out: train one reduced model per family (about"
                    " 30 s CPU each, one at a time); 'shipped': score the shipped model only")
    ap.add_argument("--heldout-per-generator", type=int, default=200,
                    help="held-out cases per generator of each family")
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
    if args.lofo != "off":
        unseen_families(model, args.seed, args.heldout_per_generator)
        leave_one_family_out(model, args.seed, args.heldout_per_generator, args.stable,
                             train_models=args.lofo == "full")

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

    compare_stringlifier(args.stringlifier, cases, load_s, args.seed, args.stringlifier_sample)


def unseen_families(model: SpanModel, seed: int, per_generator: int) -> None:
    """The shipped classifier on families no training and no rule has seen
    (``families.UNSEEN_FAMILIES``, written after the rules): the figure nobody tuned."""
    report = heldout.HeldOutReport()
    for fam in sorted(UNSEEN_FAMILIES):
        cases = heldout.family_cases([fam], seed, per_generator)
        heldout.score(cases, PathClassifier(model).collapse, report, keep_misses=2)
    print("unseen families (never trained on, written after the rules), shipped model:")
    print(heldout.format_report(report, label="shipped model"))
    print(heldout.format_generators(report))
    for gen, path, got in report.misses:
        print(f"  unseen miss [{gen}] {path} -> {got}")


def leave_one_family_out(
    model: SpanModel, seed: int, per_generator: int, stable: int, train_models: bool
) -> None:
    """The headline: each family scored by a model that never saw it (see the docstring)."""
    families = sorted(FAMILIES)
    cases = heldout.family_cases(families, seed, per_generator)
    shipped = heldout.HeldOutReport()
    for fam in families:
        # A fresh classifier per family: templates learned on one family stay there.
        heldout.score([c for c in cases if c.family == fam], PathClassifier(model).collapse,
                      shipped, keep_misses=0)
    changed, total = heldout.stable_changed(PathClassifier(model).collapse, stable, seed)
    print(f"held-out families ({len(cases)} cases, {per_generator} per generator): a glob"
          " is right when it matches a second sample of the generator and no variant with"
          " a stable piece broken")
    if not train_models:
        print(heldout.format_report(shipped, label="shipped model"))
        print(heldout.format_generators(shipped))
        print(f"shipped model: held-out package paths changed {changed}/{total}"
              f" = {changed / total:.3%}")
        return
    from armorflow.pipeline.classifier.training.train import train

    lofo = heldout.HeldOutReport()
    stable_rows = []
    for fam in families:
        t0 = clock()
        held = train(heldout.lofo_config(fam))
        fit_s = clock() - t0
        clf = PathClassifier(held)
        heldout.score([c for c in cases if c.family == fam], clf.collapse, lofo)
        ch, n = heldout.stable_changed(clf.collapse, stable, seed)
        stable_rows.append((fam, ch, n, held.threshold, fit_s))
        ok, total_f = lofo.family(fam)
        print(f"  trained without {fam}: {ok}/{total_f} = {ok / total_f:.1%} on it;"
              f" package paths changed {ch}/{n} = {ch / n:.3%}; threshold"
              f" {held.threshold:.2f}; {fit_s:.0f} s CPU", flush=True)
    print("leave-one-family-out (reduced training without the family) vs the shipped model:")
    print(heldout.format_report(lofo, shipped, label="LOFO"))
    print(heldout.format_generators(lofo, shipped))
    for gen, path, got in lofo.misses:
        print(f"  LOFO miss [{gen}] {path} -> {got}")
    worst = max(stable_rows, key=lambda r: r[1] / r[2])
    print(f"LOFO models: held-out package paths changed"
          f" {min(r[1] / r[2] for r in stable_rows):.3%}-{worst[1] / worst[2]:.3%}"
          f" (worst: without {worst[0]})")
    print(f"shipped model: held-out package paths changed {changed}/{total}"
          f" = {changed / total:.3%}")


def stratified_sample(cases: Sequence[Case], n: int, seed: int) -> list[Case]:
    """About ``n`` cases, each kind in its share of the set, in the set's order."""
    if n <= 0 or n >= len(cases):
        return list(cases)
    rng = random.Random(seed)
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        by_kind[c.kind].append(i)
    keep: set[int] = set()
    for kind in sorted(by_kind):
        idx = by_kind[kind]
        keep.update(rng.sample(idx, max(1, round(len(idx) * n / len(cases)))))
    return [c for i, c in enumerate(cases) if i in keep]


def _replay(outputs: Sequence[str]) -> Callable[[str], str]:
    """A collapse function that answers with precomputed outputs, in order."""
    it = iter(outputs)
    return lambda _path: next(it)


def as_apparmor_pattern(varmor_path: str) -> str:
    """vArmor's result in the pattern language the expected globs use.

    vArmor writes its result into the profile as it is: the ``*`` it puts in is the only
    operator it means, every other character is the file name itself. Escaping those
    changes nothing for names without glob characters and keeps the few that have them
    (``[``, ``{``, ``@``, ``,`` ...) comparable with the escaped expected globs.
    """
    return "*".join(escape_literal(p) for p in varmor_path.split("*"))


def whole_segments_agree(expected: str, got: str) -> bool:
    """Same segments globbed: a segment expected to hold a glob is that glob or ``*``;
    every other segment is unchanged. vArmor globs whole segments only, so this is the
    criterion it can meet where the expected glob keeps a fixed part (``/tmp/tmp*``)."""
    e, g = expected.split("/"), got.split("/")
    if len(e) != len(g):
        return False
    pairs = zip(e, g, strict=True)
    return all(gp in (ep, "*") if has_wildcard(ep) else gp == ep for ep, gp in pairs)


def _segment_scores(cases: Sequence[Case], outputs: Sequence[str]) -> tuple[Counter[str], int]:
    """Per kind, cases whose segments agree (content-addressed names left out, as in
    ``evaluate``); and the total."""
    ok: Counter[str] = Counter()
    for c, got in zip(cases, outputs, strict=True):
        if c.kind != "stable-content-addressed" and whole_segments_agree(c.expected, got):
            ok[c.kind] += 1
    return ok, sum(ok.values())


def _pct(ok: int, n: int) -> str:
    return f"{ok / n:.2%}" if n else "-"


def compare_stringlifier(
    python: str | None,
    cases: Sequence[Case],
    load_s: float,
    seed: int,
    sample_size: int,
) -> None:
    """Side by side on the same cases: armorflow, and stringlifier as vArmor uses it."""
    if python == "off":
        print("stringlifier: skipped (--stringlifier off)")
        return
    if python is None:
        if not _DEFAULT_STRINGLIFIER.exists():
            print(f"stringlifier: not run, no side venv at"
                  f" {_DEFAULT_STRINGLIFIER.relative_to(_REPO)}; set it up with"
                  " `make stringlifier` (torch + stringlifier, ~1 GiB) or pass"
                  " --stringlifier PYTHON")
            return
        python = str(_DEFAULT_STRINGLIFIER)

    sample = stratified_sample(cases, sample_size, seed)
    paths = [c.path for c in sample]

    # armorflow: a fresh model and classifier (the model keeps word-score and lexicon
    # caches, warm from the runs above) over the same sample.
    clf = PathClassifier(SpanModel.load(DEFAULT_MODEL_PATH))
    t0 = clock()
    ours = [clf.collapse(p) for p in paths]
    ours_s = clock() - t0

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # -I: neither the working directory nor PYTHONPATH on the side venv's sys.path.
    try:
        proc = subprocess.run([python, "-I", str(_DRIVER), "--json"], input=json.dumps(paths),
                              capture_output=True, text=True, env=env, check=False)
    except OSError as e:
        print(f"stringlifier: cannot run {python}: {e}; `make stringlifier` makes the side venv")
        return
    if proc.returncode != 0:
        print(f"stringlifier: driver failed (exit {proc.returncode}) with {python}:")
        print("\n".join(proc.stderr.strip().splitlines()[-10:]))
        return
    got = json.loads(proc.stdout)
    raw: list[str] = got["collapsed"]
    if len(raw) != len(paths):
        print(f"stringlifier: driver answered {len(raw)} paths for {len(paths)}")
        return
    theirs = [as_apparmor_pattern(r) for r in raw]

    agent = [as_apparmor_pattern(r) for r in got["agent"]]

    columns = [("armorflow", ours), ("stringlifier: service", theirs),
               ("vArmor agent + service", agent)]
    reports = [evaluate(sample, _replay(out), keep_misses=12) for _, out in columns]
    segments = [_segment_scores(sample, out) for _, out in columns]
    scope = (f"all {len(sample)} cases" if len(sample) == len(cases) else
             f"{len(sample)} of {len(cases)} cases, stratified by kind"
             f" (--stringlifier-sample {sample_size})")
    print(f"\nside by side on {scope}; stringlifier (torch {got['torch']},"
          f" {got['threads']} thread) as vArmor's classifier service applies it, and as its"
          " agent uses it (own prefix rules first, the service for the rest:"
          f" {got['sent']} of {len(paths)} paths sent); bench/stringlifier_driver.py."
          " One thread, process CPU time. exact: the expected glob; segments: the same"
          " segments globbed, a whole-segment * accepted")
    n = len(paths)
    rows: list[tuple[str, list[str | tuple[str, str]]]] = [
        ("model load", [f"{load_s * 1000:.0f} ms",
                        f"{got['load_s'] * 1000:.0f} ms +{got['import_s'] * 1000:.0f} ms import",
                        "as the service"]),
        ("paths/s (no cache)", [f"{n / ours_s:,.0f}", f"{n / got['cpu_s']:,.0f}",
                                f"{n / (got['cpu_s'] * got['sent'] / n):,.0f}"
                                if got["sent"] else "-"]),
        ("all kinds", [(_pct(r.exact, r.total), _pct(seg_total, r.total))
                       for r, (_, seg_total) in zip(reports, segments, strict=True)]),
        ("stable package paths changed",
         [f"{r.stable_changed}/{r.stable_total} = {_pct(r.stable_changed, r.stable_total)}"
          for r in reports]),
        ("content-addressed collapsed",
         [f"{r.content_addressed_changed}/{r.content_addressed_total}" for r in reports]),
    ]
    for kind in sorted(reports[0].by_kind):
        total = reports[0].by_kind[kind]
        rows.append((f"  {kind} ({total})",
                     [(_pct(r.exact_by_kind[kind], total), _pct(seg[kind], total))
                      for r, (seg, _) in zip(reports, segments, strict=True)]))

    def cell(v: str | tuple[str, str]) -> str:
        return f"{v[0]:>9s} {v[1]:>9s}" if isinstance(v, tuple) else f"{v:>19s}"

    print(f"{'':30s}" + "".join(f"   {name:>19s}" for name, _ in columns))
    print(f"{'':30s}" + f"   {'exact':>9s} {'segments':>9s}" * len(columns))
    for name, cells in rows:
        print(f"{name:30s}" + "".join(f"   {cell(v)}" for v in cells))
    for kind, path, miss in reports[1].misses:
        print(f"  stringlifier service miss [{kind}] {path!r} -> {miss!r}")


if __name__ == "__main__":
    main()
