"""Per-rule provenance (issue #18): every rule of a model says when it was first seen and
which workloads (node, namespace, pod, container) made it, through both ways in (the
offline reducer's dicts and the pipeline's fast-decoded structs), through a collapse, the
pipeline's table and the model document, and into ``armorflow report``."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from armorflow.aaglob import escape_literal
from armorflow.cli import app
from armorflow.control import make_control
from armorflow.events import make_event, read_events
from armorflow.model import PROVENANCE_SOURCES, BehaviourModel, reduce_events
from armorflow.pipeline.ingest import Ingestor
from armorflow.pipeline.state import ModelRows
from armorflow.pipeline.window import NS

RECORDING = Path(__file__).resolve().parents[1] / "docs" / "query-example.jsonl"
WEB = "varmor-default-web"
POD_A = "n1/default/web-7d4b9-abcde/nginx"
POD_B = "n2/default/web-7d4b9-fghij/nginx"
T0 = 1_800_000_000 * NS


def _file(pod: str, node: str, ts: int, path: str, perms: str = "w") -> dict[str, object]:
    return make_event("file", ts=ts, profile="p", node=node, namespace="ns", pod=pod,
                      container="c", path=path, perms=perms, owner=True)


def test_both_replicas_of_a_rule_are_named_with_the_earliest_time() -> None:
    events = list(read_events(RECORDING))
    model = reduce_events(events)[WEB]
    first, sources = model.provenance[("exec", "/usr/sbin/nginx")]
    nginx = [e for e in events if e["kind"] == "exec" and e["path"] == "/usr/sbin/nginx"]
    assert first == min(e["ts"] for e in nginx)
    assert sources == (POD_A, POD_B)
    # Which replica arrives first does not change the result: the union keeps the
    # earliest time and the smallest sources. (Within one source the first event to
    # arrive counts: an agent sends each behaviour once, when it first happens.)
    again = reduce_events(sorted(events, key=lambda e: e["node"], reverse=True))[WEB]
    assert again.provenance[("exec", "/usr/sbin/nginx")] == (first, sources)
    assert again == model and again.canonical_json() == model.canonical_json()


def test_the_fast_path_gives_the_same_provenance_as_the_reducer() -> None:
    ing = Ingestor(escape_literal)
    start = make_control("start", "p", duration_s=60, start_ts=T0, ts=T0).encode()
    batch_a = [_file("pod-a", "node-1", T0 + 1, "/data/x"), _file("pod-a", "node-1", T0 + 5,
                                                                  "/data/x")]
    batch_b = [_file("pod-b", "node-2", T0 + 2, "/data/x", "r")]
    # Agents publish arrays of one profile and kind: the msgspec fast path.
    ing.apply_batch([start, orjson.dumps(batch_a), orjson.dumps(batch_b)], now_ns=T0)
    model = ing.models["p"]
    entry = ("file", "/data/x", "", True)
    assert model.files[(entry[1], entry[2], entry[3])] == {"r", "w"}
    assert model.provenance[entry] == (T0 + 1, ("node-1/ns/pod-a/c", "node-2/ns/pod-b/c"))
    assert model.provenance == reduce_events([*batch_a, *batch_b])["p"].provenance


def test_sources_are_bounded_and_a_collapse_carries_them_to_the_glob() -> None:
    model = BehaviourModel()
    for i in range(10):
        model.add(_file(f"job-{i}", "node-1", T0 + 10 - i, f"/var/tmp/upload-{i}"))
    model.files = {("/var/tmp/upload-*", "", True): {"w"}}  # what a collapse leaves
    model.remap_provenance()
    first, sources = model.provenance[("file", "/var/tmp/upload-*", "", True)]
    assert first == T0 + 1
    assert len(sources) == PROVENANCE_SOURCES
    assert sources == tuple(sorted(f"node-1/ns/job-{i}/c" for i in range(10)))[:3]
    assert not [e for e in model.provenance if e[0] == "file" and "-*" not in e[1]]


def test_provenance_survives_the_pipeline_table_and_the_model_document() -> None:
    model = reduce_events(read_events(RECORDING))[WEB]
    rows = list(ModelRows().changed_rows(WEB, model, model.drain_dirty()))
    restored = ModelRows().load(rows)[WEB]
    assert restored.provenance == model.provenance
    document = orjson.loads(orjson.dumps(model.to_dict()))
    assert BehaviourModel.from_dict(document).provenance == model.provenance
    # The identity of a model leaves provenance out; the document keeps it.
    assert b"provenance" not in model.canonical_json()


def test_report_names_who_made_each_rule(tmp_path: Path) -> None:
    model = BehaviourModel()
    model.add(make_event("file", ts=T0, profile="p", node="node-7", namespace="shop",
                         pod="api-5c8d7-x2x9q", container="app", path="/etc/shadow",
                         perms="r", owner=False))
    model.add(make_event("syscall", ts=T0 + NS, profile="p", node="node-8", namespace="shop",
                         pod="api-5c8d7-k7m2p", container="app", name="read"))
    path = tmp_path / "p.model.json"
    path.write_bytes(orjson.dumps(model.to_dict()))
    result = CliRunner().invoke(app, ["report", str(path), "-o", "json"])
    assert result.exit_code == 0, result.output
    (doc,) = orjson.loads(result.stdout)["models"]
    (flag,) = doc["sensitive"]
    assert flag["provenance"]["sources"] == [
        {"node": "node-7", "namespace": "shop", "pod": "api-5c8d7-x2x9q", "container": "app"}]
    assert flag["provenance"]["firstSeen"] == "2027-01-15T08:00:00.000Z"
    rules = {(row["kind"], row["rule"]): row for row in doc["provenance"]}
    assert rules[("syscall", "read")]["sources"][0]["pod"] == "api-5c8d7-k7m2p"
    text = CliRunner().invoke(app, ["report", str(path)]).stdout
    assert "first seen 2027-01-15T08:00:00.000Z by shop/api-5c8d7-x2x9q/app on node-7" in text
    assert "1  shop/api-5c8d7-k7m2p/app on node-8" in text
