"""State grows with distinct behaviour, not with events: a workload that creates a flood
of distinct temp files leaves a handful of model entries, through the real classifier
stage the pipeline uses on the way in; and a model of names without end stops at its rule
budget, counts the rest and fails its window instead of the worker's memory."""

from __future__ import annotations

import random
import string
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

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


# --- the rule budget: a model of unbounded names stops growing, and says so -------------


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))


def test_a_model_past_its_rule_budget_counts_new_rules_instead_of_keeping_them() -> None:
    from armorflow.model import BehaviourModel

    model = BehaviourModel(rule_budget=3)
    for i, path in enumerate(["/srv/a", "/srv/b", "/srv/c", "/srv/d", "/srv/e"]):
        model.add(make_event("file", ts=i, profile="p", path=path, perms="r", owner=False))
    assert len(model.files) == 3 and model.over_budget == 2
    # what it has may still widen; a repeat is not counted; execs share the budget
    model.add(make_event("file", ts=9, profile="p", path="/srv/a", perms="w", owner=False))
    model.add(make_event("file", ts=9, profile="p", path="/srv/b", perms="r", owner=False))
    model.add(make_event("exec", ts=9, profile="p", path="/usr/bin/x"))
    assert model.files[("/srv/a", "", False)] == {"r", "w"}
    assert model.executions == set() and model.over_budget == 3
    # other kinds are bounded by their nature and never refused
    model.add(make_event("syscall", ts=9, profile="p", name="read"))
    assert model.syscalls == {"read"}


def test_the_ingestor_bounds_memory_per_profile_and_marks_the_window() -> None:
    rng = random.Random(7)
    ingest = Ingestor(Stages.default().path_mapper(), rule_budget=500)
    ingest.apply_batch([make_control("start", p, duration_s=3600, start_ts=1, ts=1).encode()
                        for p in ("flood", "calm")], now_ns=2)
    flood = [make_event("file", ts=10 + i, profile="flood",
                        path=f"/srv/app/users/{_word(rng)}/{_word(rng)}.json", perms="rw",
                        owner=False)
             for i in range(2_000)]
    calm = [make_event("file", ts=10, profile="calm", path="/etc/hostname", perms="r",
                       owner=False)]
    for i in range(0, len(flood), 250):
        ingest.apply_batch([orjson.dumps(flood[i:i + 250])], now_ns=20)
    ingest.apply_batch([orjson.dumps(calm)], now_ns=20)
    assert len(ingest.models["flood"].files) == 500
    window = ingest.windows["flood"]
    assert window.dropped_over_budget == 1_500 == ingest.stats.over_budget
    assert window.events == 2_000  # modeled events are still counted as seen
    assert ingest.windows["calm"].dropped_over_budget == 0
    assert len(ingest.models["calm"].files) == 1
    # the count survives the window's round trip through its table
    from armorflow.pipeline.window import Window
    assert Window.from_json(window.to_json()).dropped_over_budget == 1_500


def test_armorflow_model_does_not_write_a_profile_past_the_budget(tmp_path: Path) -> None:
    rng = random.Random(3)
    recording = tmp_path / "rec.jsonl"
    lines = [make_event("file", ts=i, profile="flood", path=f"/data/{_word(rng)}-{i}.bin",
                        perms="w", owner=False) for i in range(300)]
    lines += [make_event("file", ts=1, profile="calm", path="/etc/hostname", perms="r",
                         owner=False),
              make_event("syscall", ts=2, profile="calm", name="read")]
    recording.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    armorflow = str(Path(sys.executable).parent / "armorflow")
    done = subprocess.run([armorflow, "model", "--from", str(recording), "--out",
                           str(tmp_path / "out"), "--max-rules", "100"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    assert ("not written: flood: the model reached --max-rules 100 and 200 more events that "
            "would add a rule were not modeled") in done.stderr
    assert "1 profile(s) modeled" in done.stdout
    assert any(p.name.startswith("calm") for p in (tmp_path / "out").rglob("*"))
    assert not any(p.name.startswith("flood") for p in (tmp_path / "out").rglob("*"))


def test_a_refused_name_leaves_nothing_behind() -> None:
    """Names the classifier collapses record examples and index patterns: for a name the
    budget refuses, none of that may be kept, or the budget bounds nothing."""
    rng = random.Random(5)
    ingest = Ingestor(Stages.default(render=False).path_mapper(), rule_budget=50)
    ingest.apply_batch([make_control("start", "p", duration_s=600, start_ts=0, ts=0).encode()])
    ingest.apply_batch([orjson.dumps([
        make_event("file", ts=1, profile="p", path=f"/etc/conf{i}.d", perms="r", owner=True)
        for i in range(50)])], now_ns=1)
    model = ingest.models["p"]
    model.drain_dirty()
    before = (len(model.collapsed), len(model._learned))
    flood = [make_event("file", ts=2, profile="p", node="n1", pod="evil-0",
                        path=f"/srv/{_word(rng)}/{uuid.uuid4()}", perms="r", owner=True)
             for _ in range(3_000)]
    result = ingest.apply_batch([orjson.dumps(flood)], now_ns=2)
    assert len(model.files) == 50
    assert (len(model.collapsed), len(model._learned)) == before
    assert not model.dirty and "p" not in result.changed_models
    window = ingest.windows["p"]
    assert window.dropped_over_budget == 3_000 and ingest.over_budget == {"p"}
    (source,) = window.over_budget_sources  # who sent them, for the Failed message
    assert "evil-0" in source and window.over_budget_sources[source] == 3_000
    # mounts are paths the workload chooses too
    mounts = [make_event("mount", ts=3, profile="p", op="mount", path=f"/mnt/{i}/",
                         fstype="") for i in range(3)]
    ingest.apply_batch([orjson.dumps(mounts)], now_ns=3)
    assert model.mounts == set() and window.dropped_over_budget == 3_003


def test_a_window_row_of_a_newer_version_still_loads() -> None:
    from armorflow.pipeline.window import Window

    row = Window("p", 1, 60.0).to_json() | {"a_field_from_the_future": 1}
    assert Window.from_json(row).profile == "p"
