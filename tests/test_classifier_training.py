"""Training is reproducible and the CLI trains; the shipped model holds its accuracy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from armorflow.pipeline.classifier import PathClassifier, SpanModel, load_default
from armorflow.pipeline.classifier.training.corpus import DPKG_INFO
from armorflow.pipeline.classifier.training.evaluation import build_eval_set, evaluate
from armorflow.pipeline.classifier.training.train import TrainConfig, train


@pytest.fixture(scope="module")
def small_info_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slice of this machine's real dpkg lists (every Debian image has them)."""
    lists = sorted(DPKG_INFO.glob("*.list"))
    assert len(lists) > 50, f"need the Debian package lists in {DPKG_INFO}"
    out = tmp_path_factory.mktemp("dpkg-info")
    for lst in lists[::10]:
        shutil.copy(lst, out / lst.name)
    return out


def _small(info_dir: Path) -> TrainConfig:
    return TrainConfig(
        info_dir=info_dir,
        random_per_generator=60,
        max_stable_segments=1500,
        word_rounds=8,
        span_rounds=8,
    )


def test_training_is_reproducible(small_info_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    train(_small(small_info_dir)).save(a)
    train(_small(small_info_dir)).save(b)
    assert a.read_bytes() == b.read_bytes()
    model = SpanModel.load(a)
    assert model.version.startswith("3.") and model.meta["seed"] == TrainConfig().seed
    # Even a tiny model keeps the rules and conventions.
    clf = PathClassifier(model)
    assert clf.collapse("/proc/1106048/fdinfo/10") == "/proc/*/fdinfo/*"
    assert clf.collapse("/etc/nginx/nginx.conf") == "/etc/nginx/nginx.conf"


def test_shipped_model_small_and_versioned() -> None:
    from armorflow.pipeline.classifier.span_model import DEFAULT_MODEL_PATH

    assert DEFAULT_MODEL_PATH.stat().st_size < 2 * 1024 * 1024
    assert load_default().model.meta["generators"]


def test_shipped_model_accuracy_on_fresh_set() -> None:
    # A small run-time set (held-out package directories, real generators, real mktemp,
    # live /proc); bench/classifier.py runs the full-size one.
    cases = build_eval_set(seed=None, random_per_generator=25, stable_limit=1500)
    report = evaluate(cases, PathClassifier(SpanModel.load()).collapse)
    assert report.total > 1500
    assert report.accuracy >= 0.97, report.misses[:10]
    assert report.stable_changed_rate <= 0.005, report.misses[:10]


def test_unseen_families_stay_out_of_training() -> None:
    """The unseen families are the bench's test of software nobody tuned on: no training
    reads them (train.py draws from FAMILIES only), and their cases are well formed."""
    from armorflow.pipeline.classifier.training import heldout, train
    from armorflow.pipeline.classifier.training.families import FAMILIES, UNSEEN_FAMILIES

    assert not set(UNSEEN_FAMILIES) & set(FAMILIES)
    seen = {g for gens in FAMILIES.values() for g in gens}
    assert not {g for gens in UNSEEN_FAMILIES.values() for g in gens} & seen
    assert "UNSEEN_FAMILIES" not in Path(train.__file__).read_text()
    cases = heldout.family_cases(sorted(UNSEEN_FAMILIES), seed=3, per_generator=5)
    assert {c.generator for c in cases} == {g for gens in UNSEEN_FAMILIES.values() for g in gens}
    for case in cases:
        assert case.second != case.path and case.broken
        assert case.path not in case.broken
