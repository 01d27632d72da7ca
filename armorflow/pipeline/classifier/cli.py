"""``armorflow collapse`` and ``armorflow classifier train|info|evaluate``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from armorflow.pipeline.classifier.classifier import PathClassifier


def _collapse(
    explain: Annotated[
        bool, typer.Option("--explain", help="After each path, print why, segment by segment.")
    ] = False,
    siblings: Annotated[
        int | None,
        typer.Option(
            "--siblings",
            help="Also merge numbered siblings when a directory has at least this many"
            " (reads all input first).",
        ),
    ] = None,
    perms: Annotated[
        str | None,
        typer.Option(
            "--perms",
            help="Permissions the rules would carry (letters of 'rwamlk', 'x' for exec):"
            " apply the safety policy, printing the literal path where it refuses the glob.",
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Model file (default: the shipped one).")
    ] = None,
) -> None:
    """Read literal paths on stdin (one per line); print their AppArmor globs in order."""
    from armorflow.pipeline.classifier.classifier import PathClassifier, load_default
    from armorflow.pipeline.classifier.safety import EVERY
    from armorflow.pipeline.classifier.siblings import collapse_siblings
    from armorflow.pipeline.classifier.span_model import SpanModel

    if perms is not None and (not perms or not set(perms) <= EVERY):
        raise typer.BadParameter(f"letters of {''.join(sorted(EVERY))!r}", param_hint="--perms")
    clf = PathClassifier(SpanModel.load(model)) if model else load_default()
    if siblings is not None:
        paths = [line.rstrip("\n") for line in sys.stdin]
        globs = [clf.collapse(p) for p in paths]
        merged = collapse_siblings(globs, threshold=siblings)
        for p, g in zip(paths, globs, strict=True):
            _write_result(clf, p, g, merged[g], perms, explain)
        return
    for line in sys.stdin:
        path = line.rstrip("\n")
        glob = clf.collapse(path)
        _write_result(clf, path, glob, glob, perms, explain)


def _write_result(
    clf: PathClassifier, path: str, glob: str, merged: str, perms: str | None, explain: bool
) -> None:
    """One output line (the glob, or the literal path where the policy refuses the glob
    for ``perms``), then with ``explain`` the ``#`` lines that say why."""
    from armorflow.aaglob import escape_literal
    from armorflow.pipeline.classifier.safety import refusal, refused_letters

    rule = refusal(merged, perms) if perms is not None else None
    out = escape_literal(path) if rule is not None else merged
    sys.stdout.write(out + "\n")
    if not explain:
        return
    sys.stdout.write(f"#  {path} -> {out}\n")
    for e in clf.explain(path):
        sys.stdout.write(f"#    {e.segment!r}: {e.describe()} -> {e.result}\n")
    if merged != glob:
        sys.stdout.write(
            f"#    sibling collapse: {glob} -> {merged} (numbered siblings differ only in"
            " digit runs)\n"
        )
    if rule is not None:
        sys.stdout.write(
            f"#    kept literal by safety rule {rule.name} ({rule.why}): {merged} may not"
            f" carry {perms}\n"
        )
    elif perms is None and (limits := refused_letters(merged)):
        said = ", ".join(f"{name} refuses {letters}" for name, letters in limits.items())
        sys.stdout.write(f"#    safety: {said}; a rule with those stays literal\n")


classifier_app = typer.Typer(help="Train and inspect the path classifier model.")


@classifier_app.command("train")
def _train(
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the model (default: shipped).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="RNG seed for the generators.")] = None,
    random_per_generator: Annotated[
        int | None, typer.Option(help="Random names drawn from each generator.")
    ] = None,
    corpus: Annotated[
        str | None,
        typer.Option(help="'generators' (the shipped model) or 'families' (families.py).")
    ] = None,
    random_per_family: Annotated[
        int | None, typer.Option(help="Random paths drawn from each family (families corpus).")
    ] = None,
    info_dir: Annotated[
        Path | None, typer.Option(help="dpkg info directory with *.list files.")
    ] = None,
) -> None:
    """Gather package paths and generator names, fit the model, write it (reproducible)."""
    import dataclasses
    import logging

    from armorflow.pipeline.classifier.span_model import DEFAULT_MODEL_PATH
    from armorflow.pipeline.classifier.training.train import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    default = TrainConfig()
    cfg = dataclasses.replace(
        default,
        seed=default.seed if seed is None else seed,
        corpus=corpus or default.corpus,
        random_per_generator=random_per_generator or default.random_per_generator,
        random_per_family=random_per_family or default.random_per_family,
        info_dir=info_dir or default.info_dir,
    )
    model = train(cfg)
    target = out or DEFAULT_MODEL_PATH
    model.save(target)
    typer.echo(f"model {model.version} -> {target} ({target.stat().st_size} bytes)")


@classifier_app.command("info")
def _info(
    model: Annotated[Path | None, typer.Option("--model", help="Model file.")] = None,
) -> None:
    """Print the model's version, thresholds and training metadata."""
    import json

    from armorflow.pipeline.classifier.span_model import DEFAULT_MODEL_PATH, SpanModel

    path = model or DEFAULT_MODEL_PATH
    m = SpanModel.load(path)
    typer.echo(f"version: {m.version}\nfile: {path} ({path.stat().st_size} bytes)")
    typer.echo(f"gate: {m.gate}\nthreshold: {m.threshold}")
    typer.echo(f"word trees: {len(m.word.trees)}\nspan trees: {len(m.span.trees)}")
    typer.echo("meta: " + json.dumps(m.meta, sort_keys=True))


@classifier_app.command("evaluate")
def _evaluate(
    seed: Annotated[int | None, typer.Option(help="Seed (default: a fresh random set).")] = None,
    per_generator: Annotated[int, typer.Option(help="Random names per generator.")] = 1000,
    stable: Annotated[int, typer.Option(help="Held-out package paths to sample.")] = 20000,
) -> None:
    """Accuracy on a fresh evaluation set (held-out package paths, real generators)."""
    from armorflow.pipeline.classifier.classifier import load_default
    from armorflow.pipeline.classifier.training.evaluation import (
        build_eval_set,
        evaluate,
        format_report,
    )

    cases = build_eval_set(seed=seed, random_per_generator=per_generator, stable_limit=stable)
    typer.echo(format_report(evaluate(cases, load_default().collapse)))


def register(app: typer.Typer) -> None:
    """Add ``collapse`` and the ``classifier`` group to ``app``."""
    app.command("collapse")(_collapse)
    app.add_typer(classifier_app, name="classifier")
