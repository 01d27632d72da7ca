"""Written content (classifier/workdirs.py) and walked trees (classifier/content.py):
directories a workload fills with names its input chooses (uploads, restored archives,
backups) become one glob for writing; a tree it walks (lists with directories below,
reads what it finds) becomes one glob for reading. Neither widens onto what the workload
only read, ran or mapped executable, nor into node, system or secret places.

The real case: tar, traced by the eBPF tracer, archives a tree and restores it; a second
run with another tree and other names must be allowed by the first run's profile.
"""

from __future__ import annotations

import shutil
import tarfile
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
from armorflow.pipeline.classifier import load_default, safety
from armorflow.pipeline.classifier.content import content_globs
from armorflow.pipeline.classifier.origins import model_origins
from armorflow.pipeline.classifier.workdirs import (
    generalise_written_content,
    refusal,
    written_content_globs,
)
from armorflow.pipeline.stages import ClassifierStage, ClosedWindow, RenderStage
from support.apparmor_check import compile_check
from support.traced import run_traced

PROFILE = "job"
W = "/srv/app"


def _file(path: str, perms: str, old: str | None = None) -> Event:
    fields = {"old_path": old} if old else {}
    return make_event("file", ts=1, profile=PROFILE, node="n1", namespace="ci", pod="job-1",
                      container="c", path=path, perms=perms, owner=True, **fields)


def _model(files: dict[str, str], execs: tuple[str, ...] = ()) -> BehaviourModel:
    events = [_file(p, perms) for p, perms in sorted(files.items())]
    events += [make_event("exec", ts=1, profile=PROFILE, node="n1", namespace="ci",
                          pod="job-1", container="c", path=p) for p in execs]
    return reduce_events(events)[PROFILE]


def _rules(model: BehaviourModel) -> dict[str, str]:
    return {key[0]: "".join(sorted(p)) for key, p in model.files.items()}


UPLOADS = {
    f"{W}/conf/app.conf": "r",
    f"{W}/html/index.html": "r",
    f"{W}/html/upload/report.txt": "rw",
    f"{W}/html/upload/2026/": "w",
    f"{W}/html/upload/2026/jan/": "rw",
    f"{W}/html/upload/2026/jan/photo.jpg": "rw",
    f"{W}/html/upload/old/photo.jpg": "w",
    f"{W}/html/upload/copy.txt": "w",
}


def test_an_upload_tree_becomes_one_write_rule_and_its_neighbours_stay() -> None:
    model = _model(UPLOADS)
    (made,) = generalise_written_content(model)
    assert (made.pattern, made.perms, made.files) == (f"{W}/html/upload/**", "rw", 4)
    assert _rules(model) == {f"{W}/conf/app.conf": "r", f"{W}/html/index.html": "r",
                             f"{W}/html/upload/**": "rw"}
    # run 2's uploads, directories included, are allowed; the configuration, the page
    # served and anything beside the upload tree are not
    for name in ("video.bin", "2027/q1/data.csv", "albums/"):
        assert matches(made.pattern, f"{W}/html/upload/{name}")
    for other in ("/srv/app/html/index.html", "/srv/app/conf/app.conf", "/srv/app/html/x",
                  "/srv/app/html/upload"):
        assert not matches(made.pattern, other)
    assert model.collapsed[made.pattern] and len(model.collapsed[made.pattern]) <= 3


def test_a_directory_of_written_files_becomes_dir_star_from_three_on() -> None:
    two = _model({f"{W}/backup/a.tar.gz": "w", f"{W}/backup/b.tar.xz": "w"})
    assert written_content_globs(two) == []
    three = _model({f"{W}/backup/{n}": "w" for n in ("a.tar.gz", "b.tar.xz", "c.zip")})
    (made,) = generalise_written_content(three)
    assert (made.pattern, made.perms) == (f"{W}/backup/*", "w")
    assert not matches(made.pattern, f"{W}/backup/sub/x")


@pytest.mark.parametrize("blocker", [
    {f"{W}/out/settings.json": "r"},           # an input only read: no write onto it
    {f"{W}/out/plugin.so": "rm"},              # mapped executable, never written
    {f"{W}/out/*.cfg": "r"},                   # a read-only glob reaching the directory
])
def test_a_directory_with_something_only_read_or_run_stays_literal(
        blocker: dict[str, str]) -> None:
    files = {f"{W}/out/{n}.csv": "w" for n in ("a", "b", "c", "d")} | blocker
    assert written_content_globs(_model(files)) == []


def test_an_executable_the_workload_did_not_write_blocks_the_tree() -> None:
    files = {f"{W}/build/{n}.o": "rw" for n in ("a", "b", "c")} | {f"{W}/build/app": "rw"}
    # it wrote the program it runs: the glob adds nothing to that name
    assert [g.pattern for g in written_content_globs(_model(files, (f"{W}/build/app",)))] \
        == [f"{W}/build/*"]
    # a program there that it never wrote: write on it would be a way to change it
    assert written_content_globs(_model(files, (f"{W}/build/tool",))) == []
    assert written_content_globs(_model(files, (f"{W}/build/*.sh",))) == []


def test_link_lock_and_exec_never_ride_on_the_glob() -> None:
    files = {f"{W}/data/{n}": "rwk" for n in ("a.db", "a.db-wal", "a.db-shm")}
    files[f"{W}/data/b.db"] = "wm"   # written and mapped: keeps its own literal rule
    model = _model(files)
    (made,) = generalise_written_content(model)
    assert made.perms == "rwk"
    assert _rules(model)[f"{W}/data/b.db"] == "mw"
    linked = reduce_events([_file(f"{W}/data/{n}", "w") for n in ("x", "y", "z")]
                           + [_file(f"{W}/data/hard", "l", old=f"{W}/data/x")])[PROFILE]
    generalise_written_content(linked)
    assert (f"{W}/data/hard", f"{W}/data/x", True) in linked.files  # the link stays literal
    assert linked.files[(f"{W}/data/*", "", True)] == {"w"}


def test_a_directory_only_listed_below_blocks_the_tree_not_its_own_glob() -> None:
    files = {f"{W}/data/a/x": "w", f"{W}/data/b/y": "w", f"{W}/data/c": "w"}
    assert [g.pattern for g in written_content_globs(_model(files))] == [f"{W}/data/**"]
    for listed in ("conf.d/", ".ssh/"):  # read by the app, or only looked at
        assert written_content_globs(_model(files | {f"{W}/data/{listed}": "r"})) == []
    # the area's own listing is not below it (DIR/** does not match DIR/)
    assert written_content_globs(_model(files | {f"{W}/data/": "r"})) != []


def test_a_hard_link_to_a_file_not_written_blocks_the_directory() -> None:
    files = {f"{W}/data/{n}": "w" for n in ("a", "b", "c")} | {f"{W}/config.yaml": "r"}
    events = [_file(p, v) for p, v in files.items()]
    linked = reduce_events([*events, _file(f"{W}/data/cfg", "l", old=f"{W}/config.yaml")])
    assert written_content_globs(linked[PROFILE]) == []
    # a link to a file it wrote itself opens nothing new
    own = reduce_events([*events, _file(f"{W}/data/a2", "l", old=f"{W}/data/a")])
    assert [g.pattern for g in written_content_globs(own[PROFILE])] == [f"{W}/data/*"]


def test_a_mount_point_inside_blocks_the_area() -> None:
    events = [_file(f"{W}/data/{n}", "w") for n in ("x/a", "y/b", "c")]
    events.append(make_event("mount", ts=1, profile=PROFILE, node="n1", namespace="ci",
                             pod="job-1", container="c", op="mount",
                             path=f"{W}/data/mnt/", fstype=""))
    assert written_content_globs(reduce_events(events)[PROFILE]) == []


@pytest.mark.parametrize("where", ["/var//log/app", "/srv/./app", "/srv/x/../../etc"])
def test_paths_that_are_not_canonical_are_never_generalised(where: str) -> None:
    files = {f"{where}/{n}": "w" for n in ("a", "b", "c")}
    assert written_content_globs(_model(files)) == []
    walk = {f"{where}/": "r", f"{where}/d1/": "r", f"{where}/d2/": "r",
            f"{where}/d1/f": "r", f"{where}/d2/g": "r"}
    assert content_globs(_model(walk)) == {}


@pytest.mark.parametrize("files", [
    {f"{W}/pkg/__pycache__/{n}.cpython-311.pyc": "rw" for n in ("a", "b", "c")},
    {f"{W}/node_modules/{n}": "w" for n in ("a", "b", "c")},
    {f"{W}/out/{n}": "w" for n in ("a.txt", "b.txt", "hook.php")},  # code written there
])
def test_never_where_code_is_loaded_with_a_plain_read(files: dict[str, str]) -> None:
    assert written_content_globs(_model(files)) == []


def test_a_tree_never_holds_a_refused_place() -> None:
    files = {"/var/cache/a/x": "w", "/var/cache/b/y": "w", "/var/cache/z": "w"}
    assert written_content_globs(_model(files)) == []  # /var/cache/** reaches apt's


def test_a_written_sibling_never_gives_write_to_a_file_mapped_executable() -> None:
    """An earlier pass (counters, sibling collapse) must not merge a plugin the workload
    maps executable with written siblings: plugin*.so w would reach plugin1.so."""
    files = {f"{W}/plugins/plugin1.so": "rm", f"{W}/plugins/plugin2.so": "w",
             f"{W}/plugins/plugin3.so": "w", f"{W}/plugins/a": "w", f"{W}/plugins/b": "w",
             f"{W}/plugins/c": "w"}
    window = ClassifierStage().close(
        ClosedWindow(PROFILE, "ci", {}, "AppArmor", 0, 1, _model(files)))
    for (path, _old, _owner), perms in window.model.files.items():
        if matches(path, f"{W}/plugins/plugin1.so"):
            assert not set("".join(perms)) & set("wa"), (path, perms)
    # a program it runs and never wrote, beside written counters: same
    ran = _model({f"{W}/bin/job-1": "w", f"{W}/bin/job-2": "w"}, (f"{W}/bin/job-3",))
    window = ClassifierStage().close(ClosedWindow(PROFILE, "ci", {}, "AppArmor", 0, 1, ran))
    assert not any(matches(p, f"{W}/bin/job-3") for (p, _o, _w) in window.model.files)


@pytest.mark.parametrize("place", ["/var/backups", "/var/spool/cron", "/host/etc",
                                   "/host/var/lib/kubelet", "/srv/mysecrets",
                                   "/srv/app/apikeys"])
def test_a_walk_is_refused_where_a_read_is(place: str) -> None:
    walk = {f"{place}/": "r", f"{place}/d1/": "r", f"{place}/d2/": "r",
            f"{place}/d1/f": "r", f"{place}/d2/g": "r"}
    assert content_globs(_model(walk)) == {}


SENSITIVE = ["/etc/app", "/etc", "/root/out", "/home/alice/out", "/usr/lib/app",
             "/usr/local/bin", "/bin/x", "/lib/x", "/var/log/app", "/var/lib/kubelet/pods",
             "/proc/self", "/sys/fs/x", "/run/app", "/srv/app/secrets", "/data/.ssh",
             "/srv/app/tls", "/tmp", "/var"]


@pytest.mark.parametrize("place", SENSITIVE)
def test_never_in_node_system_or_secret_places(place: str) -> None:
    files = {f"{place}/{n}": "w" for n in ("a", "b", "c", "d/e", "f/g")}
    assert written_content_globs(_model(files)) == []


_NAME = st.text(st.sampled_from("aB3/.*?[]{}\\\"^@,x9-_ \n"), min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["/etc", "/tmp/w", "/root", "/usr/bin", "/srv/a/b",
                                           "/srv/a", "/home/u", "/var/lib/app"]),
                          _NAME, st.sampled_from(["w", "rw", "a", "r", "rm"])),
                min_size=1, max_size=8))
def test_hostile_names_never_make_a_glob_in_a_sensitive_place(
        names: list[tuple[str, str, str]]) -> None:
    events = [_file(f"{place}/{name}", perms) for place, name, perms in names
              if "\n" not in name and "\x00" not in name]
    if not events:
        return
    model = reduce_events(events)[PROFILE]
    for glob in generalise_written_content(model):
        base = glob.pattern.rsplit("/", 1)[0]
        assert refusal(base.replace("\\", "")) is None
        assert safety.allows(glob.pattern, glob.perms)
        assert set(glob.perms) <= set("rwak")
        for place in ("/etc", "/root", "/usr", "/home", "/tmp/w"):
            assert not glob.pattern.startswith(place + "/") or place == "/tmp/w"
        # the glob's directory is literal: only its last segment is a wildcard
        assert glob.pattern.endswith(("/*", "/**"))
        assert not any(c in base.replace("\\*", "").replace("\\?", "")
                       .replace("\\[", "").replace("\\{", "") for c in "*?[{")
    for (path, _old, _owner), perms in model.files.items():
        if "w" in perms and matches(path, "/etc/shadow"):
            pytest.fail(f"{path} allows writing /etc/shadow")


def test_a_walked_tree_becomes_one_read_rule() -> None:
    """tar, cp -r, a VCS adding its work tree: the top and directories below it listed,
    files read in them. Few files, but the walk shows the tree is content."""
    walk = {f"{W}/data/": "r", f"{W}/data/photos/": "r", f"{W}/data/docs/": "r",
            f"{W}/data/photos/a.jpg": "r", f"{W}/data/docs/letter.txt": "r"}
    made = content_globs(_model(walk))
    assert list(made) == [f"{W}/data/**"] and made[f"{W}/data/**"].walked
    # one directory listed below is a look, not a walk; nor is reading in one of them
    look = {f"{W}/data/": "r", f"{W}/data/photos/": "r", f"{W}/data/photos/a.jpg": "r"}
    assert content_globs(_model(look)) == {}
    one = {p: v for p, v in walk.items() if p != f"{W}/data/docs/letter.txt"}
    assert content_globs(_model(one)) == {}
    # a secret-looking directory listed inside refuses the tree; so does a node place
    secret = walk | {f"{W}/data/keys/": "r"}
    assert content_globs(_model(secret)) == {}
    etc = {p.replace(f"{W}/data", "/etc/app"): v for p, v in walk.items()}
    assert content_globs(_model(etc)) == {}


def test_the_stage_says_so_explains_it_and_the_profile_compiles() -> None:
    window = ClosedWindow(PROFILE, "ci", {}, "AppArmor", 0, 1, _model(UPLOADS))
    window = RenderStage().close(ClassifierStage().close(window))
    assert window.counts["writtenContentGlobs"] == 1
    assert any(n.startswith(f"{W}/html/upload/** rw: written content: 4 files written")
               for n in window.notes)
    assert window.apparmor is not None and f"owner {W}/html/upload/** rw," in window.apparmor
    compile_check(window.apparmor)
    origins = {o.pattern: o.describe() for o in model_origins(window.model, load_default())}
    assert origins[f"{W}/html/upload/**"].startswith("written content")
    off = ClassifierStage(content=False).close(
        ClosedWindow(PROFILE, "ci", {}, "AppArmor", 0, 1, _model(UPLOADS)))
    assert "writtenContentGlobs" not in off.counts


# --- the real case: tar --------------------------------------------------------------------

BASE = Path("/tmp/armorflow-workdirs")


@pytest.fixture
def base() -> Iterator[Path]:
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    yield BASE
    shutil.rmtree(BASE, ignore_errors=True)


def _tar_job(tracer: Tracer, base: Path, tree: dict[str, bytes]) -> list[Event]:
    """Archive ``base/data`` (holding ``tree``) into ``base/backup`` and restore it into
    ``base/restore``, traced; the file events below ``base``."""
    for d in ("data", "backup", "restore"):
        shutil.rmtree(base / d, ignore_errors=True)
        (base / d).mkdir()
    for rel, blob in tree.items():
        (base / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / "data" / rel).write_bytes(blob)
    script = (f"tar -cf {base}/backup/all.tar -C {base} data && "
              f"tar -xf {base}/backup/all.tar -C {base}/restore")
    events = run_traced(tracer, ["sh", "-c", script], Attribution(
        profile=PROFILE, namespace="ci", pod="job-1", container="c", container_id="cid-tar",
        node="n1"))
    with tarfile.open(base / "backup/all.tar") as archive:
        assert sorted(m.name for m in archive.getmembers() if m.isfile()) == sorted(
            f"data/{rel}" for rel in tree)
    return [e for e in events if e["profile"] == PROFILE and e["kind"] == "file"
            and e["path"].startswith(f"{base}/")]


@pytest.mark.root
def test_real_tar_restores_other_names_under_the_first_runs_profile(
        tracer: Tracer, base: Path) -> None:
    first = _tar_job(tracer, base, {"photos/a.jpg": b"a" * 5000, "photos/b.jpg": b"b",
                                    "docs/letter.txt": b"dear\n", "etc/app.conf": b"k=v\n"})
    window = ClosedWindow(PROFILE, "ci", {}, "AppArmor", 0, 1,
                          reduce_events(first)[PROFILE])
    window = RenderStage().close(ClassifierStage().close(window))
    rules = _rules(window.model)
    assert rules.get(f"{base}/data/**") == "r", rules          # walked: read only
    # restored: written, the tree from restore/, where tar made data/
    assert "w" in rules.get(f"{base}/restore/**", ""), "\n".join(
        f"{k} {v}" for k, v in sorted(rules.items()))
    assert window.apparmor is not None
    compile_check(window.apparmor)
    second = _tar_job(tracer, base, {"music/2025/live/track01.flac": b"f" * 9000,
                                     "music/readme.md": b"songs\n",
                                     "projects/alpha/src/main.rs": b"fn main(){}\n"})
    names = {e["path"] for e in first}
    new = [e for e in second if e["path"] not in names
           and not e["path"].startswith(f"{base}/backup/")]
    assert new
    for event in new:
        allowed = [key for key, perms in window.model.files.items()
                   if matches(key[0], event["path"])
                   and set(event["perms"]) <= set("".join(perms))]
        assert allowed, f"{event['path']} {event['perms']} has no rule"
    # run 1 only read the data tree: writing there is not allowed, nor beside the trees
    # (the backup directory held one archive), nor reading elsewhere
    for path, perms in ((f"{base}/data/x", "w"), (f"{base}/backup/x", "w"), (f"{base}/x", "w"),
                        (f"{base}/etc/passwd", "r")):
        assert not any(matches(key[0], path) and set(perms) <= set("".join(p))
                       for key, p in window.model.files.items()), path
