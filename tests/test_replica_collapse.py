"""Replica collapse (issue #16, item 3): names that differ between replicas exactly where
the replicas' own names do become one glob; names two containers of one pod take from
their (stable) container names stay literal; the safety policy still decides.

The recordings are real: each replica is a real process traced by the eBPF tracer with
its own attribution (pod, container, node), as the agent attributes a pod's containers,
and the program names its files from ``POD_NAME`` / ``CONTAINER`` as the downward API
hands them to a container."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from armorflow.aaglob import matches
from armorflow.agents.attribution import Attribution
from armorflow.agents.bpf import Tracer
from armorflow.events import Event, make_event
from armorflow.model import BehaviourModel, reduce_events
from armorflow.pipeline.classifier import load_default
from armorflow.pipeline.classifier.origins import model_origins
from armorflow.pipeline.classifier.replicas import collapse_replicas
from armorflow.pipeline.stages import ClassifierStage, ClosedWindow, RenderStage
from support.apparmor_check import compile_check
from support.traced import run_traced

BASE = Path("/tmp/armorflow-replicas")
PROFILE = "cache"


@pytest.fixture
def base() -> Iterator[Path]:
    shutil.rmtree(BASE, ignore_errors=True)
    (BASE / "peers").mkdir(parents=True)
    (BASE / "run").mkdir()
    yield BASE
    shutil.rmtree(BASE, ignore_errors=True)


def run_replica(tracer: Tracer, node: str, pod: str, container: str, script: str) -> list[Event]:
    """``script`` run by sh as one container of ``pod`` on ``node``; its file events."""
    argv = ["env", f"POD_NAME={pod}", f"CONTAINER={container}", "sh", "-c", script]
    events = run_traced(tracer, argv, Attribution(
        profile=PROFILE, namespace="shop", pod=pod, container=container,
        container_id=f"cid-{pod}-{container}", node=node))
    return [e for e in events if e["profile"] == PROFILE and e["kind"] == "file"
            and e["path"].startswith(f"{BASE}/")]


@pytest.mark.root
def test_real_replicas_and_containers_of_one_pod(tracer: Tracer, base: Path) -> None:
    # Each replica writes its own peer file and the shared config it reads; each container
    # of a pod writes a socket named after its container.
    script = (f'echo up > {base}/peers/"$POD_NAME".json; cat {base}/peers/"$POD_NAME".json; '
              f'echo x > {base}/run/"$CONTAINER".sock; echo same > {base}/shared.conf')
    events: list[Event] = []
    for node, pod in (("node-a", "cache-0"), ("node-b", "cache-1")):
        for container in ("app", "metrics"):
            events += run_replica(tracer, node, pod, container, script)
    model = reduce_events(events)[PROFILE]
    before = {key[0] for key in model.files}
    assert {f"{base}/peers/cache-0.json", f"{base}/peers/cache-1.json",
            f"{base}/run/app.sock", f"{base}/run/metrics.sock"} <= before
    (made,) = collapse_replicas(model)
    assert made.pattern == f"{base}/peers/cache-*.json"
    assert made.literals == (f"{base}/peers/cache-0.json", f"{base}/peers/cache-1.json")
    after = {key[0]: "".join(sorted(p)) for key, p in model.files.items()}
    # cache-2 (the next replica) is allowed its own file; nothing else under peers/.
    assert "w" in after[made.pattern]
    assert matches(made.pattern, f"{base}/peers/cache-2.json")
    assert not matches(made.pattern, f"{base}/peers/other.json")
    # Container names do not change in the next pod: the sockets stay as they were.
    assert f"{base}/run/app.sock" in after and f"{base}/run/metrics.sock" in after
    # A name every replica uses is stable: it stays literal.
    assert f"{base}/shared.conf" in after
    # The glob's provenance names both pods.
    (_first, sources) = next(o for e, o in model.provenance.items() if e[1] == made.pattern)
    assert {s.split("/")[2] for s in sources} == {"cache-0", "cache-1"}
    assert {s.split("/")[0] for s in sources} == {"node-a", "node-b"}


def _write(node: str, pod: str, path: str, perms: str = "w") -> Event:
    return make_event("file", ts=1, profile=PROFILE, node=node, namespace="shop", pod=pod,
                      container="app", path=path, perms=perms, owner=True)


def test_the_safety_policy_still_decides() -> None:
    model = reduce_events([_write("n1", "web-7d4b9-abcde", "/etc/app/web-7d4b9-abcde.conf"),
                           _write("n2", "web-7d4b9-fghij", "/etc/app/web-7d4b9-fghij.conf")]
                          )[PROFILE]
    assert collapse_replicas(model) == []
    assert len(model.files) == 2


def test_a_difference_not_explained_by_the_makers_stays() -> None:
    # Two pods writing different names that are not their own: not a replica's name.
    model = reduce_events([_write("n1", "api-0", "/data/a.json"),
                           _write("n2", "api-1", "/data/b.json")])[PROFILE]
    assert collapse_replicas(model) == []
    # One pod writing two names from its own name is not a difference between replicas.
    model = reduce_events([_write("n1", "api-0", "/data/api-0.a"),
                           _write("n1", "api-0", "/data/api-0.b")])[PROFILE]
    assert collapse_replicas(model) == []
    # Node names count: a log per node.
    model = reduce_events([_write("worker-1", "api-0", "/var/lib/app/worker-1.log"),
                           _write("worker-2", "api-1", "/var/lib/app/worker-2.log")])[PROFILE]
    (made,) = collapse_replicas(model)
    assert made.pattern == "/var/lib/app/worker-*.log"


def test_the_stage_explains_it_and_the_profile_compiles() -> None:
    # StatefulSet pods: names the classifier keeps (``cache-0`` looks stable).
    model = reduce_events([_write("n1", "cache-0", "/var/lib/app/peers/cache-0.json"),
                           _write("n2", "cache-1", "/var/lib/app/peers/cache-1.json")]
                          )[PROFILE]
    window = ClosedWindow(PROFILE, "shop", {}, "AppArmor", 0, 1, model)
    window = RenderStage().close(ClassifierStage().close(window))
    assert window.counts["replicaGlobs"] == 1
    assert [key[0] for key in window.model.files] == ["/var/lib/app/peers/cache-*.json"]
    assert window.notes == ["/var/lib/app/peers/cache-*.json: replica collapse: 2 names that "
                            "differ where the names of their makers do (cache-0, cache-1) "
                            "(/var/lib/app/peers/cache-0.json, /var/lib/app/peers/cache-1.json)"]
    assert window.apparmor is not None
    compile_check(window.apparmor)
    (origin,) = model_origins(window.model, load_default())
    assert origin.describe() == ("replica collapse: the names differ where the names of the "
                                 "replicas that made them do (cache-0, cache-1)")


def test_models_without_provenance_are_left_alone() -> None:
    model = BehaviourModel.from_dynamic_result({"apparmor": {"files": [
        {"path": "/data/api-0.json", "permissions": ["w"], "owner": True},
        {"path": "/data/api-1.json", "permissions": ["w"], "owner": True}]}})
    assert collapse_replicas(model) == []
