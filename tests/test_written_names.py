"""Names the workload makes up for what it writes (classifier/written.py): template
temporary names, counters and fan-out directories become globs; read names, lone
ordinary names and sensitive places do not.

The real case: gcc, traced by the eBPF tracer, compiles two files and links them with
its temporary directory in the test's own directory; a second build of other sources
makes other temporary names, and the first build's model must allow every one of them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armorflow.aaglob import matches
from armorflow.agents.attribution import Attribution
from armorflow.agents.bpf import Tracer
from armorflow.events import Event, make_event
from armorflow.model import BehaviourModel, reduce_events
from armorflow.pipeline.classifier import load_default
from armorflow.pipeline.classifier.origins import model_origins
from armorflow.pipeline.classifier.written import collapse_written
from armorflow.pipeline.stages import ClassifierStage, ClosedWindow, RenderStage
from support.apparmor_check import compile_check
from support.traced import run_traced

PROFILE = "build"
BASE = Path("/tmp/armorflow-written")


def _file(path: str, perms: str = "rw", old: str | None = None) -> Event:
    fields = {"old_path": old} if old else {}
    return make_event("file", ts=1, profile=PROFILE, node="n1", namespace="ci", pod="job-1",
                      container="cc", path=path, perms=perms, owner=True, **fields)


def _model(*events: Event) -> BehaviourModel:
    return reduce_events(list(events))[PROFILE]


def _rules(model: BehaviourModel) -> dict[str, str]:
    return {key[0]: "".join(sorted(p)) for key, p in model.files.items()}


def test_template_names_become_fixed_width_globs() -> None:
    model = _model(_file("/work/tmp/ccYkKRXS.s"), _file("/work/tmp/cc8gclYn.o"),
                   _file("/work/tmp/cclxKLM7.res"), _file("/work/tmp/ccPMyMXy.cdtor.c"),
                   _file("/work/tmp/Makefile", "r"), _file("/work/tmp/notes.txt"))
    made, refused = collapse_written(model)
    assert refused == 0
    # one template seen with four suffixes: any suffix, the width kept
    assert [g.pattern for g in made] == ["/work/tmp/cc??????.*"]
    rules = _rules(model)
    assert "/work/tmp/notes.txt" in rules and "/work/tmp/Makefile" in rules
    assert matches("/work/tmp/cc??????.*", "/work/tmp/ccQ2wErT.o")  # a suffix not seen
    assert not matches("/work/tmp/cc??????.*", "/work/tmp/ccQ2wErTy.s")  # width kept
    assert not matches("/work/tmp/cc??????.*", "/work/tmp/ccQ2wErT")  # a suffix needed
    assert not matches("/work/tmp/cc??????.*", "/work/tmp/cc/x/yz.s")
    assert not matches("/work/tmp/cc??????.*", "/work/tmp/ccQ2wErT.s/x")


def test_one_suffix_stays_literal() -> None:
    model = _model(_file("/work/tmp/ccYkKRXS.s"), _file("/work/tmp/cc8gclYn.s"),
                   _file("/work/tmp/tmpAb3dEf"), _file("/work/tmp/tmpQ9wErT.log"))
    made, _refused = collapse_written(model)
    # ``tmp`` with and without a suffix: one suffix each, kept
    assert sorted(g.pattern for g in made) == [
        "/work/tmp/cc??????.s", "/work/tmp/tmp??????", "/work/tmp/tmp??????.log"]


def test_a_lone_name_needs_the_full_template_shape() -> None:
    # git's ``.git/tXXXXXX``: upper, lower and digits in six characters.
    model = _model(_file("/srv/repo/.git/t8VBmI6"), _file("/srv/repo/.git/cacheData.json"),
                   _file("/srv/repo/.git/ccYkKRXS.s"), _file("/srv/repo/.git/ORIG_HEAD"))
    made, _refused = collapse_written(model)
    assert [g.pattern for g in made] == ["/srv/repo/.git/t??????"]
    assert {"/srv/repo/.git/cacheData.json", "/srv/repo/.git/ccYkKRXS.s",
            "/srv/repo/.git/ORIG_HEAD"} <= set(_rules(model))



def test_a_word_and_separator_prefix_is_a_template_prefix() -> None:
    # git's update-server-info writes info/refs through refs_XXXXXX
    model = _model(_file("/srv/repo/.git/info/refs_vfPFqB"),
                   _file("/srv/repo/.git/info/refs_Q2wE9t"),
                   _file("/srv/repo/.git/info/exclude_old"),
                   _file("/srv/repo/.git/info/my_report"))
    made, _refused = collapse_written(model)
    assert [g.pattern for g in made] == ["/srv/repo/.git/info/refs_??????"]
    assert {"/srv/repo/.git/info/exclude_old", "/srv/repo/.git/info/my_report"} <= set(
        _rules(model))
    # a prefix must hold a letter and end in the separator: no ``__``-only or ``1-``
    for name in ("__Ab3dE6", "12-Ab3dE6", "a.b_Ab3dE6"):
        assert collapse_written(_model(_file(f"/srv/x/{name}")))[0] == [], name


@pytest.mark.parametrize(("name", "generated"), [
    ("tFVkZqM", True),   # git's template with no digit drawn: the case gives it away
    ("tqZxWbK", True),
    ("tMyFile", False),  # CamelCase words: one capital after the first letter
    ("tReadMe", False),
    ("tREADME", False),  # capitals only
    ("treport", False),
    ("tABCdef", True),
])
def test_a_lone_name_without_digits_needs_irregular_case(name: str, generated: bool) -> None:
    model = _model(_file(f"/srv/repo/.git/{name}"))
    made, _refused = collapse_written(model)
    assert bool(made) is generated, made


def test_names_only_read_are_never_taken_for_generated() -> None:
    model = _model(_file("/data/aB3dE6", "r"), _file("/data/Xy7zQ1", "r"),
                   _file("/data/part-1.csv", "r"), _file("/data/part-2.csv", "r"))
    assert collapse_written(model) == ([], 0)


def test_counters_and_fan_outs_become_one_glob_each() -> None:
    body = "/var/cache/nginx/body"
    model = _model(
        _file(f"{body}/1/", "w"), _file(f"{body}/2/", "w"),
        _file(f"{body}/1/00/0000000001"), _file(f"{body}/2/00/0000000002"),
        _file("/srv/redis/temp-2.rdb"), _file("/srv/redis/temp-18.rdb"),
        _file("/srv/repo/objects/0f/", "w"), _file("/srv/repo/objects/a8/", "w"),
        # two-letter names without a digit may be words: left alone
        _file("/srv/lang/be/", "w"), _file("/srv/lang/cb/", "w"))
    # git's loose objects as the way-in classifier leaves them: the object name is a
    # hash fan-out glob, the link target (its temporary name) keeps its directory.
    for fan in ("0f", "a8"):
        model.files[("/srv/repo/objects/*/*", f"/srv/repo/objects/{fan}/tmp_obj_*", True)] = {
            "l"}
    made, refused = collapse_written(model)
    assert refused == 0
    rules = _rules(model)
    for pattern in (f"{body}/*/", f"{body}/*/00/*", "/srv/redis/temp-*.rdb",
                    "/srv/repo/objects/??/", "/srv/lang/be/", "/srv/lang/cb/"):
        assert pattern in rules, pattern
    links = [key for key in model.files if key[1]]
    assert links == [("/srv/repo/objects/*/*", "/srv/repo/objects/??/tmp_obj_*", True)]
    assert matches(f"{body}/*/00/*", f"{body}/3/00/0000000003")
    assert all(g.kind == "counter" for g in made)


SENSITIVE = ["/etc", "/etc/ssh", "/root/.ssh", "/usr/bin", "/usr/sbin", "/bin", "/sbin",
             "/home/alice", "/var/lib/kubelet", "/proc/sys/kernel", "/sys/kernel"]


@pytest.mark.parametrize("place", SENSITIVE)
def test_never_in_sensitive_places(place: str) -> None:
    model = _model(_file(f"{place}/aB3dE6", "w"), _file(f"{place}/Xy7zQ1", "w"),
                   _file(f"{place}/t8VBmI6", "w"),
                   _file(f"{place}/job-1.conf", "w"), _file(f"{place}/job-2.conf", "w"))
    before = _rules(model)
    made, refused = collapse_written(model)
    assert made == [] and refused >= 1
    assert _rules(model) == before


_NAME = st.text(st.sampled_from("aB3/.*?[]{}\\\"^@,x9-_ \n"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["/etc", "/tmp/w", "/root", "/usr/bin", "/srv/a/b"]),
                          _NAME), min_size=1, max_size=6))
def test_hostile_names_never_widen_past_their_directory(names: list[tuple[str, str]]) -> None:
    events = [_file(f"{place}/{name}", "w") for place, name in names]
    model = _model(*events)
    made, _refused = collapse_written(model)
    for glob in made:
        for place in SENSITIVE:
            assert not glob.pattern.startswith(place + "/")
        parent = glob.pattern.rpartition("/")[0]
        assert all(lit.startswith(parent.replace("?", "")) or "?" in parent or "*" in parent
                   for lit in glob.literals)
        # a glob never matches a name in another directory, nor a deeper one
        assert not matches(glob.pattern, glob.literals[0].rpartition("/")[0] + "/x/y/z")
    for key in model.files:
        assert key[0].startswith("/")


def test_the_stage_says_so_explains_it_and_the_profile_compiles() -> None:
    model = _model(_file("/work/tmp/ccYkKRXS.s"), _file("/work/tmp/cc8gclYn.s"),
                   _file("/etc/aB3dE6", "w"), _file("/etc/Xy7zQ1", "w"))
    window = ClosedWindow(PROFILE, "ci", {}, "AppArmor", 0, 1, model)
    window = RenderStage().close(ClassifierStage().close(window))
    assert window.counts["writtenGlobs"] == 1
    assert window.counts["writtenGlobsRefused"] == 1
    assert any(n.startswith("/work/tmp/cc??????.s: temporary names") for n in window.notes)
    assert window.apparmor is not None and "/work/tmp/cc??????.s rw," in window.apparmor
    compile_check(window.apparmor)
    origins = {o.pattern: o.describe() for o in model_origins(window.model, load_default())}
    assert "temporary name" in origins["/work/tmp/cc??????.s"]


# --- the real case: gcc ------------------------------------------------------------------


@pytest.fixture
def base() -> Iterator[Path]:
    shutil.rmtree(BASE, ignore_errors=True)
    (BASE / "tmp").mkdir(parents=True)
    yield BASE
    shutil.rmtree(BASE, ignore_errors=True)


def _build(tracer: Tracer, base: Path, sources: dict[str, str], out: str) -> list[Event]:
    for name, text in sources.items():
        (base / name).write_text(text)
    objects = [name.replace(".c", ".o") for name in sources]
    script = (f"cd {base} && " + " && ".join(f"gcc -c {name}" for name in sources)
              + f" && gcc {' '.join(objects)} -o {out}")
    events = run_traced(tracer, ["env", f"TMPDIR={base}/tmp", "sh", "-c", script], Attribution(
        profile=PROFILE, namespace="ci", pod="job-1", container="cc", container_id="cid-job-1",
        node="n1"), timeout_s=120)
    return [e for e in events if e["profile"] == PROFILE and e["kind"] == "file"
            and e["path"].startswith(f"{base}/tmp/")]


@pytest.mark.root
def test_real_gcc_temporary_names_of_the_next_build_are_allowed(tracer: Tracer,
                                                                 base: Path) -> None:
    first = _build(tracer, base, {"main.c": "int f(void);\nint main(void){return f();}\n",
                                  "util.c": "int f(void){return 0;}\n"}, "app")
    assert len({e["path"] for e in first}) >= 3  # two .s and the linker's files
    model = reduce_events(first)[PROFILE]
    made, refused = collapse_written(model)
    assert made and refused == 0
    assert not any(key[0] in {e["path"] for e in first} for key in model.files)
    second = _build(tracer, base, {"lib.c": "int g(int x){return x+1;}\n",
                                   "cli.c": "int g(int);\nint main(void){return g(-1);}\n"},
                    "cli")
    assert {e["path"] for e in second}.isdisjoint({e["path"] for e in first})
    for event in second:
        allowed = [key for key, perms in model.files.items()
                   if matches(key[0], event["path"]) and set(event["perms"]) <= set(
                       "".join(perms))]
        assert allowed, f"{event['path']} {event['perms']} has no rule"
    # and nothing of another shape in the same directory
    for other in ("passwd", "ccX.s", "cc1234567.s", "evil/ccABC123.s"):
        assert not any(matches(key[0], f"{base}/tmp/{other}") for key in model.files)
