"""State grows with distinct behaviour, not with events: a workload that creates a flood
of distinct temp files leaves a handful of model entries, through the real classifier
stage the pipeline uses on the way in."""

from __future__ import annotations

import random
import string
import tempfile
import uuid

import orjson

from armorflow.control import make_control
from armorflow.events import make_event
from armorflow.pipeline.ingest import Ingestor
from armorflow.pipeline.stages import Stages
from armorflow.pipeline.state import ModelRows

DISTINCT = 20_000
_RNG = random.Random(4)
_ALNUM = string.ascii_letters + string.digits


def _mkstemp_suffix() -> str:
    """What mkstemp(3) puts for "XXXXXX": six characters from [A-Za-z0-9]."""
    return "".join(_RNG.choice(_ALNUM) for _ in range(6))


def test_a_flood_of_temp_files_stays_a_few_entries() -> None:
    stages = Stages.default(render=False)
    ingestor = Ingestor(stages.path_mapper())
    ingestor.apply_batch([make_control("start", "p", duration_s=600, start_ts=0, ts=0).encode()])
    names = tempfile._get_candidate_names()
    generators = [
        lambda i: f"/tmp/tmp{next(names)}",                      # Python tempfile
        lambda i: f"/tmp/php{_mkstemp_suffix()}",                # PHP uploads (mkstemp)
        lambda i: f"/proc/{1000 + i}/status",                    # pids
        lambda i: f"/var/lib/app/cache/{uuid.uuid4()}/data.bin",  # uuids
    ]
    batch = [
        make_event("file", ts=1 + i, profile="p", path=generators[i % 4](i), perms="rw",
                   owner=True)
        for i in range(DISTINCT)
    ]
    for start in range(0, DISTINCT, 1_000):
        ingestor.apply_batch([orjson.dumps(batch[start:start + 1_000])], now_ns=1)
    model = ingestor.models["p"]
    paths = {key[0] for key in model.files}
    assert ingestor.stats.modeled == DISTINCT
    # A handful of patterns (a rare miss of the classifier may stay literal), never
    # anything like one entry per file.
    assert {"/tmp/tmp*", "/proc/*/status", "/var/lib/app/cache/*/data.bin"} <= paths
    assert len(paths) < 0.001 * DISTINCT
    # ...and what the worker would store is as small.
    rows = dict(ModelRows().changed_rows("p", model, model.drain_dirty()))
    assert sum(len(v) for v in rows.values()) < 64 * 1024


def test_the_classifier_memo_is_bounded_and_carries_recurring_names() -> None:
    """Each random name is new, so a memo keyed by name would grow with the events: the
    collapsed names go to a small two-generation memo, the stable ones to their own."""
    from armorflow.pipeline.classifier import classifier as module

    fresh = module.PathClassifier(module.load_default().model)
    generation = module._COLLAPSED_CACHE_GENERATION
    names = tempfile._get_candidate_names()  # type: ignore[attr-defined]
    stable = [f"/usr/lib/python3/dist-packages/mod{i}/__init__.py" for i in range(100)]
    for i in range(3 * generation):
        fresh.collapse(f"/tmp/tmp{next(names)}")
        if i % 100 == 0:
            for path in stable:
                assert fresh.collapse(path) == path
    assert len(fresh._collapsed) <= generation and len(fresh._old_collapsed) <= generation
    # random names stay out of the memo of stable names, where the library names stay
    assert all(f"mod{i}" in fresh._cache for i in range(100))
    # (plus the few random names the model misses and keeps literal: under 1% of them)
    assert len(fresh._cache) < 100 + 3 * generation // 100
    assert fresh.collapse(f"/tmp/tmp{next(names)}") == "/tmp/tmp*"
