"""The AppArmor rule evaluator of bench/profile_quality.py (bench/aa_rules.py): real
profiles, Debian's own abstractions, and the names the renderer escapes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from armorflow.aaglob import escape_literal, to_profile_path
from armorflow.model import BehaviourModel
from armorflow.render import render_apparmor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from aa_rules import RuleError, RuleSet, decode_name, parse_perms

BASE_AVAILABLE = (Path("/etc/apparmor.d/abstractions/base").is_file()
                  and Path("/etc/apparmor.d/tunables/global").is_file())


def profile(body: str) -> str:
    return ("abi <abi/3.0>,\n#include <tunables/global>\n\n"
            "profile t flags=(attach_disconnected,mediate_deleted) {\n"
            "  #include <abstractions/base>\n" + body + "\n}\n")


def test_directory_matches_only_with_its_slash(tmp_path: Path) -> None:
    rs = RuleSet.from_text("/etc/ r,\n/srv/data r,\n/srv/tree/** rw,\n/srv/one/* r,\n",
                           base_dir=tmp_path)
    assert rs.allows("/etc/", "r")
    assert not rs.allows("/etc", "r")
    assert rs.allows("/srv/data", "r")
    assert not rs.allows("/srv/data/", "r")  # a directory named data is another name
    assert rs.allows("/srv/tree/a/b/", "w")  # ** crosses '/', a directory too
    assert not rs.allows("/srv/tree/", "r")  # ** needs at least one character
    assert rs.allows("/srv/one/f", "r")
    assert not rs.allows("/srv/one/d/", "r")  # * never matches the slash of a directory


def test_permission_letters(tmp_path: Path) -> None:
    rs = RuleSet.from_text("/usr/bin/id ix,\n/usr/bin/env Px -> other,\n/lib/x.so mr,\n"
                           "/var/log/app.log a,\n/var/db/f rwk,\n", base_dir=tmp_path)
    assert rs.allows("/usr/bin/id", "x")
    assert rs.allows("/usr/bin/env", "x")
    assert not rs.allows("/usr/bin/id", "r")  # ix grants execute, not read
    assert rs.allows("/lib/x.so", "mr")
    assert not rs.allows("/lib/x.so", "w")
    assert rs.allows("/var/log/app.log", "a")
    assert not rs.allows("/var/log/app.log", "w")  # append does not grant write
    assert rs.allows("/var/db/f", "a")  # write grants append
    assert rs.allows("/var/db/f", "wk")
    check = rs.check("/var/db/f", "rwl")
    assert not check.allowed and check.missing == "l"
    assert parse_perms("mrixwlk") == frozenset("mrxwlk")
    with pytest.raises(RuleError):
        parse_perms("rz")


def test_owner_and_deny(tmp_path: Path) -> None:
    rs = RuleSet.from_text("owner /home/*/notes rw,\n/srv/** rw,\ndeny /srv/secret/** w,\n"
                           "audit deny /srv/keys r,\n", base_dir=tmp_path)
    assert rs.allows("/home/ann/notes", "rw", owner=True)
    assert not rs.allows("/home/ann/notes", "r", owner=False)
    assert rs.allows("/srv/secret/x", "r")
    assert not rs.allows("/srv/secret/x", "w")
    assert not rs.allows("/srv/secret/x", "a")  # deny w takes append away too
    assert not rs.allows("/srv/keys", "r")


def test_alternations_variables_and_links(tmp_path: Path) -> None:
    text = ("@{APP}=/opt/app /srv/app/\n@{APP}+=/var/lib/app\n@{n}={1,2,[3-5]}\n"
            "@{APP}/run/@{n}.sock rw,\n/etc/{passwd,group} r,\n/data/{,*.conf} r,\n"
            "owner link /data/new -> /data/old,\n/x\\@\\{APP\\}/lit r,\n")
    rs = RuleSet.from_text(text, base_dir=tmp_path)
    for root in ("/opt/app", "/srv/app", "/var/lib/app"):  # '//' folded to '/'
        assert rs.allows(f"{root}/run/4.sock", "rw")
    assert not rs.allows("/opt/app/run/6.sock", "r")
    assert rs.allows("/etc/group", "r") and not rs.allows("/etc/shadow", "r")
    assert rs.allows("/data/", "r") and rs.allows("/data/x.conf", "r")
    assert rs.allows("/data/new", "l", target="/data/old")
    assert not rs.allows("/data/new", "l", target="/etc/shadow")
    assert not rs.allows("/data/new", "r")  # a link rule grants only the link
    assert rs.allows("/x@{APP}/lit", "r")  # \@ is no variable
    bad = RuleSet.from_text("@{nope}/x r,\n", base_dir=tmp_path)
    assert not bad.rules and "undefined variable" in bad.skipped[0]


def test_quoted_names_with_escapes(tmp_path: Path) -> None:
    names = ['/srv/sp ace', '/srv/q"uote', '/srv/st*ar', '/srv/br{a,b}ce', '/srv/new\nline',
             '/srv/back\\slash', '/srv/caf\u00e9', '/srv/at@{HOME}', '/srv/raw\udcff']
    text = "".join(f"{to_profile_path(escape_literal(n))} rw,\n" for n in names)
    rs = RuleSet.from_text(text, base_dir=tmp_path)
    assert len(rs.rules) == len(names)
    for name in names:
        assert rs.allows(name, "rw"), name
    assert not rs.allows("/srv/stXar", "r")  # the escaped star is a literal star
    assert not rs.allows("/srv/bra", "r")  # the escaped braces are literal braces
    assert decode_name("/a\\x2a") == "/a\\*"  # \x2a is a literal '*'
    assert decode_name("/a\\101b") == "/aAb"  # octal


def test_includes_follow_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "tunables").mkdir()
    (tmp_path / "tunables" / "vars").write_text("@{D}=/srv/d\n")
    (tmp_path / "abs").mkdir()
    (tmp_path / "abs" / "one").write_text("@{D}/one r,\n")
    (tmp_path / "abs" / "two~").write_text("/everything/** rw,\n")  # a backup: skipped
    text = "#include <tunables/vars>\ninclude <abs>\ninclude if exists <missing>\n"
    rs = RuleSet.from_text(text, base_dir=tmp_path)
    assert rs.allows("/srv/d/one", "r")
    assert not rs.allows("/everything/x", "r")
    with pytest.raises(RuleError):
        RuleSet.from_text("include <missing>\n", base_dir=tmp_path)


@pytest.mark.skipif(not BASE_AVAILABLE, reason="needs Debian's /etc/apparmor.d")
def test_debian_base_abstraction() -> None:
    rs = RuleSet.from_text(profile("  owner /srv/app/** rw,\n"))
    assert not rs.skipped
    assert rs.allows("/etc/ld.so.cache", "mr")
    assert rs.allows("/usr/lib/x86_64-linux-gnu/libc.so.6", "mr")
    assert rs.allows("/proc/4242/maps", "r")  # @{PROC}/@{pid}/{maps,auxv,status}
    assert not rs.allows("/proc/self/maps", "r")  # AppArmor sees the pid, never 'self'
    assert rs.allows("/usr/share/zoneinfo/", "r") and rs.allows("/dev/null", "rw")
    assert rs.allows("/root/.Private/k", "w")  # owner @{HOME}/.Private/** (HOME has /root/)
    assert not rs.allows("/root/.Private/k", "w", owner=False)
    for path, perms in [("/etc/shadow", "r"), ("/root/.ssh/id_rsa", "r"), ("/etc/passwd", "w"),
                        ("/usr/bin/x", "w"), ("/root/.bashrc", "w"), ("/usr/bin/dash", "x")]:
        assert not rs.allows(path, perms), path
    assert rs.allows("/srv/app/a/", "w") and not rs.allows("/srv/app/a", "w", owner=False)


@pytest.mark.skipif(not BASE_AVAILABLE, reason="needs Debian's /etc/apparmor.d")
def test_rendered_profile_round_trip() -> None:
    model = BehaviourModel()
    events = [("exec", "/usr/bin/id", ""), ("file", "/srv/w e\"ird,{x}", "rw"),
              ("file", "/srv/dir/", "r"), ("file", "/srv/lock", "wk")]
    for kind, path, perms in events:
        event: dict[str, object] = {"v": 1, "kind": kind, "ts": 1, "node": "n", "profile": "t",
                                    "namespace": "d", "pod": "p", "container": "c",
                                    "container_id": "x", "pid": 1, "comm": "c", "path": path}
        if kind == "file":
            event.update(perms=perms, owner=True)
        model.add(event)  # type: ignore[arg-type]
    text = render_apparmor("t", model).text
    rs = RuleSet.from_text(text)
    assert rs.allows("/usr/bin/id", "x")
    assert rs.allows('/srv/w e"ird,{x}', "rw")
    assert not rs.allows("/srv/w e\"ird,x", "r")
    assert rs.allows("/srv/dir/", "r") and not rs.allows("/srv/dir", "r")
    assert rs.allows("/srv/lock", "wk") and not rs.allows("/srv/lock", "r")
    assert not rs.allows("/srv/lock", "w", owner=False)  # rendered as an owner rule
