"""The tracer on every path operation AppArmor mediates besides opens (issue #15): real
processes, real syscalls, and the permission AppArmor asks for each.

What AppArmor asks (security/apparmor/lsm.c): create, delete, chmod, chown and truncate
are ``w``; a rename reads, writes and deletes its old name (``rw``) and creates its new
one (``w``); a hard link asks ``l`` of the new name, with the target in the rule; mapping
a file executable asks ``m``; a lock ``k`` (an exclusive one ``wk``); connecting to a
path socket ``rw``, binding one creates it (``w``). A directory's name ends in ``/``.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from armorflow.aaglob import escape_literal, matches
from armorflow.agents.bpf import Tracer
from armorflow.events import Event, validate
from armorflow.model import reduce_events
from armorflow.render import render_apparmor
from support.apparmor_check import compile_check
from test_tracer import of_kind, run_traced

pytestmark = [pytest.mark.root]

#: NUL-free names that quote, glob, brace and break lines.
HOSTILE = ['sp ace', 'q"uote', 'st*ar', 'br{a,b}ce', 'new\nline']


@pytest.fixture
def work() -> Iterator[Path]:
    # Not below pytest's tmp_path: its /tmp/pytest-of-root/... is fine, but a short fixed
    # base keeps the expected names readable in failures.
    base = Path("/tmp/armorflow-paths")
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


def file_perms(events: list[Event]) -> dict[tuple[str, str | None], set[str]]:
    """(path, old_path) -> the permission strings reported for it."""
    out: dict[tuple[str, str | None], set[str]] = {}
    for event in of_kind(events, "file"):
        validate(event)
        out.setdefault((event["path"], event.get("old_path")), set()).add(event["perms"])
    return out


def test_operations_on_names_carry_apparmors_permissions(tracer: Tracer, work: Path) -> None:
    (work / "keep").write_text("x\n")
    script = (
        f"cd {work} && mkdir d1 && echo x > f1 && mv f1 f2 && ln f2 f3 && rm f2 f3 && "
        f"rmdir d1 && mkdir d2 && mv d2 d3 && chmod 700 d3 && chown 0 keep && "
        f"truncate -s 0 keep && mknod fifo p && ln -s keep sym && "
        f"ls {work} >/dev/null && ls d3/.. >/dev/null"
    )
    events, box = run_traced(tracer, ["sh", "-c", script], "paths-names")
    assert box.poll() == 0
    seen = file_perms(events)
    w = str(work)
    expected = {
        (f"{w}/d1/", None): "w",        # mkdir, then rmdir: a directory
        (f"{w}/f1", None): "rw",        # the rename's old name
        (f"{w}/f2", None): "w",         # its new name (then unlinked: w again)
        (f"{w}/f3", f"{w}/f2"): "l",    # hard link: l on the new name, with its target
        (f"{w}/f3", None): "w",         # unlinked
        (f"{w}/d2/", "old"): "rw",      # a directory renamed: both names are directories
        (f"{w}/d3/", None): "w",        # the new name; chmod of it
        (f"{w}/keep", None): "w",       # chown, truncate
        (f"{w}/fifo", None): "w",       # mknod
        (f"{w}/sym", None): "w",        # symlink creates its own name only
        (f"{w}/", None): "r",           # ls of a directory: opened, with the slash
    }
    for (path, old), perms in expected.items():
        key = (path, None if old == "old" else old)
        assert key in seen, (key, sorted(seen))
        assert perms in seen[key], (key, seen[key])
    # The symlink's target is text, not a path AppArmor checks; no directory without "/".
    assert (f"{w}/keep", f"{w}/sym") not in seen
    assert (f"{w}/d1", None) not in seen and (f"{w}/d3", None) not in seen
    # Creations are the creator's (AppArmor's owner); d3 and keep are root's, as we are.
    owners = {(e["path"], e["perms"]): e["owner"] for e in of_kind(events, "file")}
    assert owners[(f"{w}/d1/", "w")] is True
    assert owners[(f"{w}/keep", "w")] is True


def test_descriptors_relative_names_and_sockets(tracer: Tracer, work: Path) -> None:
    (work / "sub").mkdir()
    (work / "lib.bin").write_bytes(b"\0" * 4096)
    (work / "shared.lock").write_text("")
    (work / "excl.lock").write_text("")
    (work / "ro.lock").write_text("")
    program = textwrap.dedent(f"""
        import fcntl, mmap, os, socket
        w = {str(work)!r}
        with open(w + "/lib.bin", "rb") as f:   # an executable mapping: m
            mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC).close()
        with open(w + "/shared.lock", "rb") as f:
            fcntl.lockf(f, fcntl.LOCK_SH)        # fcntl F_SETLK, F_RDLCK: k
        with open(w + "/ro.lock", "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX)        # an exclusive flock asks w too
        with open(w + "/excl.lock", "r+b") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)        # F_WRLCK: wk
        sub = os.open(w + "/sub", os.O_RDONLY | os.O_DIRECTORY)
        os.mkdir("made", dir_fd=sub)             # mkdirat relative to a descriptor
        os.rename("made", "moved", src_dir_fd=sub, dst_dir_fd=sub)
        os.chmod(sub, 0o755)                     # fchmod of a directory
        os.chdir(w)
        os.symlink("x", "sub/../rel-link")       # relative to the working directory
        s = socket.socket(socket.AF_UNIX)
        s.bind("sub/sock")                       # bind creates the socket file: w
        s.listen()
        c = socket.socket(socket.AF_UNIX)
        c.connect(w + "/sub/sock")               # connect by path: rw
        a = socket.socket(socket.AF_UNIX)
        a.bind("\\0abstract-name")               # abstract: no file, no event
    """)
    events, box = run_traced(tracer, ["python3", "-c", program], "paths-fds")
    assert box.poll() == 0
    seen = file_perms(events)
    w = str(work)
    for path, perms in [
        (f"{w}/lib.bin", "m"),
        (f"{w}/shared.lock", "k"),
        (f"{w}/ro.lock", "wk"),
        (f"{w}/excl.lock", "wk"),
        (f"{w}/sub/made/", "w"),
        (f"{w}/sub/made/", "rw"),
        (f"{w}/sub/moved/", "w"),
        (f"{w}/sub/", "w"),
        (f"{w}/rel-link", "w"),
        (f"{w}/sub/sock", "w"),
        (f"{w}/sub/sock", "rw"),
    ]:
        assert perms in seen.get((path, None), set()), (path, perms, sorted(seen))
    assert not [p for p, _ in seen if "abstract" in p]
    assert not [p for p, _ in seen if "/../" in p or "/./" in p]


def test_repeats_are_sent_once_and_hostile_names_stay_literal(
    tracer: Tracer, work: Path
) -> None:
    names = " ".join("'" + n.replace("'", "'\\''") + "'" for n in HOSTILE)
    script = (
        f"cd {work} && for i in $(seq 30); do for n in {names}; do "
        f'mkdir "$n"; chmod 700 "$n"; rmdir "$n"; done; done'
    )
    events, box = run_traced(tracer, ["sh", "-c", script], "paths-hostile")
    assert box.poll() == 0
    files = [e for e in of_kind(events, "file") if e["path"].startswith(f"{work}/")]
    for name in HOSTILE:
        path = f"{work}/{name}/"
        mine = [e for e in files if e["path"] == path]
        # mkdir, chmod and rmdir all ask w: 90 operations, one event (kernel dedup).
        assert len(mine) == 1, (name, mine)
    model = reduce_events(files)["paths-hostile"]
    rendered = render_apparmor("paths-hostile", model)
    compile_check(rendered.text)
    assert rendered.drops.counts == {}
    rules = [line.strip() for line in rendered.text.splitlines() if f"{work}/" in line
             or "armorflow-paths" in line]
    assert len(rules) == len(HOSTILE), rules
    # Each model pattern matches its own name only.
    for name in HOSTILE:
        pattern = escape_literal(f"{work}/{name}/")
        assert (pattern, "", True) in model.files or (pattern, "", False) in model.files
        for other in HOSTILE:
            assert matches(pattern, f"{work}/{other}/") == (other == name)


def test_a_directory_gone_before_its_record_is_read_keeps_its_slash(
    tracer: Tracer, work: Path
) -> None:
    # chmod's record names a directory the kernel has not looked at; the agent looks at
    # it when the record arrives, and by then rmdir has removed it. What mkdir's record
    # said of the name decides: still a directory, still the creator's.
    program = (f"import os\nfor i in range(1, 301):\n    d = {str(work)!r} + f'/d{{i}}'\n"
               f"    os.mkdir(d); os.chmod(d, 0o700); os.rmdir(d)\n")
    events, box = run_traced(tracer, ["python3", "-c", program], "paths-gone")
    assert box.poll() == 0
    files = [e for e in of_kind(events, "file") if e["path"].startswith(f"{work}/d")]
    assert files, "no events"
    assert [e["path"] for e in files if not e["path"].endswith("/")] == []
    assert [e["path"] for e in files if not e["owner"]] == []
    assert {e["path"] for e in files} == {f"{work}/d{i}/" for i in range(1, 301)}
