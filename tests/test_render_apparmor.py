"""The AppArmor renderer: the seed's layout and rules, merged permissions, and every profile
compiled by the real apparmor_parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from armorflow.aaglob import escape_literal
from armorflow.events import make_event
from armorflow.model import BehaviourModel, reduce_events
from armorflow.render import ProfileNameError, RenderOptions, render_apparmor
from support.apparmor_check import compile_check

NAME = "varmor-cluster-varmor-demo-4"

#: What the seed's step 4 did inside the debian:10 container (c0 of default/demo-4 and
#: c1 of demo/demo-4), as the events an agent reports for it.
DEMO_FILES = [
    ("/dev/tty", "rw"),
    ("/etc/group", "r"),
    ("/etc/ld.so.cache", "r"),
    ("/etc/nsswitch.conf", "r"),
    ("/etc/passwd", "r"),
    ("/etc/shadow", "r"),
    ("/proc/filesystems", "r"),
    ("/proc/sys/kernel/ngroups_max", "r"),
    ("/root/c1", "w"),
    ("/root/c1", "wa"),
    ("/root/c1", "r"),
    ("/usr/bin/id", "r"),
    ("/usr/bin/sleep", "r"),
    ("/usr/bin/unshare", "r"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "rm"),
    ("/usr/lib/x86_64-linux-gnu/libselinux.so.1", "m"),
    ("/usr/lib/x86_64-linux-gnu/libpcre.so.3", "r"),
    ("/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", "r"),
]


def demo_model() -> BehaviourModel:
    base = {"profile": NAME, "namespace": "demo", "pod": "demo-4-x", "container": "c1"}
    events = [make_event("exec", path=p, **base)
              for p in ("/usr/bin/id", "/usr/bin/sleep", "/usr/bin/unshare")]
    events += [make_event("file", path=p, perms=perms, owner=True, **base)
               for p, perms in DEMO_FILES]
    events.append(make_event("capability", name="CAP_SYS_ADMIN", **base))
    events.append(make_event("network", family="AF_INET", sock_type="SOCK_STREAM",
                             protocol=6, **base))
    events.append(make_event("mount", op="umount", path="/", fstype="", **base))
    events.append(make_event("signal", signal="SIGTERM", peer=NAME, direction="send", **base))
    events.append(make_event("ptrace", mode="read", peer=NAME, **base))
    return reduce_events(events)[NAME]


def _expected(shared_dir: Path) -> str:
    path = shared_dir / "data/audit/varmor/behavior_modeling_demo4_apparmor_profile.txt"
    return path.read_text()


def test_demo_model_renders_varmors_expected_profile(shared_dir: Path) -> None:
    # vArmor's own output writes a plain ``network,``; with that option ours is identical.
    rendered = render_apparmor(NAME, demo_model(), options=RenderOptions(allow_all_network=True))
    assert rendered.text == _expected(shared_dir)
    assert rendered.drops.total == 0
    compile_check(rendered.text)


def test_demo_model_default_names_the_observed_socket(shared_dir: Path) -> None:
    rendered = render_apparmor(NAME, demo_model())
    expected = _expected(shared_dir).replace("  network,\n", "  network inet stream,\n")
    assert rendered.text == expected
    compile_check(rendered.text)


def test_demo_profile_matches_the_seed_walkthrough(shared_dir: Path) -> None:
    # The seed page lost its indentation; compare the rule lines themselves.
    seed = (shared_dir / "seed/behavior-modeling-mode.txt").read_text()
    start = seed.index("## == Managed by vArmor == ##")
    end = seed.index("\n}\n", start) + 2
    seed_lines = [ln.strip() for ln in seed[start:end].splitlines() if ln.strip()]
    rendered = render_apparmor(NAME, demo_model(), options=RenderOptions(allow_all_network=True))
    ours = [ln.strip() for ln in rendered.text.splitlines() if ln.strip()]
    assert ours == seed_lines


def test_sections_are_in_the_seed_order() -> None:
    text = render_apparmor(NAME, demo_model()).text
    titles = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("# ---- ")]
    assert titles == [f"# ---- {t} ----" for t in
                      ("EXEC", "FILE", "CAPABILITY", "NETWORK", "PTRACE", "SIGNAL", "ADDITIONAL")]


# --- permissions ---------------------------------------------------------------------------


def _file_lines(model: BehaviourModel, *, collapse: bool = True) -> list[str]:
    options = RenderOptions(collapse_library_trees=collapse)
    text = render_apparmor("p", model, options=options).text
    compile_check(text)
    return _section(text, "FILE")


def test_permissions_merge_in_apparmor_order_and_append_goes_with_write() -> None:
    m = BehaviourModel()
    m.files[("/a", "", False)] = {"k", "w", "r", "a", "m", "l"}
    m.files[("/b", "", False)] = {"a"}
    m.files[("/c", "", True)] = {"r"}
    m.files[("/c", "", False)] = {"w"}
    assert _file_lines(m) == ["/a mrwlk,", "/b a,", "/c w,", "owner /c r,"]


def test_permissions_from_a_foreign_dynamic_result_are_read_per_letter() -> None:
    m = BehaviourModel.from_dynamic_result({"apparmor": {"files": [
        {"path": "/a", "permissions": ["rw", "x"], "owner": False},
        {"path": "/b", "permissions": [""], "owner": False}]}})
    r = render_apparmor("p", m)
    compile_check(r.text)
    assert _section(r.text, "FILE") == ["/a rw,"]
    assert r.drops.by_reason() == {"unknown-permission 'x'": 1, "no-permissions": 1}


def test_library_trees_collapse_only_read_and_mmap() -> None:
    m = BehaviourModel()
    m.files[("/usr/lib/x86_64-linux-gnu/libz.so.1", "", True)] = {"m", "r"}
    m.files[("/lib/x86_64-linux-gnu/security/pam_unix.so", "", False)] = {"r"}
    m.files[("/usr/lib64/ld-linux-x86-64.so.2", "", False)] = {"m", "r"}
    m.files[("/usr/lib/x86_64-linux-gnu/cache.db", "", True)] = {"r", "w"}
    m.files[("/usr/lib/python3.11/os.py", "", False)] = {"r"}
    m.files[("/usr/local/lib/aarch64-linux-gnu/libx.so", "", False)] = {"m"}
    m.files[("/local/lib/x86_64-linux-gnu/liby.so", "", False)] = {"r"}
    m.files[("/usr/lib/x86_64-linux-gnu/", "", False)] = {"r"}  # the tree itself stays
    assert _file_lines(m) == [
        "/lib/x86_64-linux-gnu/** r,",
        "/local/lib/x86_64-linux-gnu/liby.so r,",
        "/usr/lib/python3.11/os.py r,",
        "/usr/lib/x86_64-linux-gnu/ r,",
        "/usr/lib64/** mr,",
        "/usr/local/lib/aarch64-linux-gnu/** m,",
        "owner /usr/lib/x86_64-linux-gnu/** mr,",
        "owner /usr/lib/x86_64-linux-gnu/cache.db rw,",
    ]
    uncollapsed = _file_lines(m, collapse=False)
    assert uncollapsed[0] == "/lib/x86_64-linux-gnu/security/pam_unix.so r,"


def test_link_with_old_path_becomes_a_link_rule() -> None:
    m = BehaviourModel()
    m.files[("/data/new", "/data/old", False)] = {"l", "w"}
    assert _file_lines(m) == ["/data/new w,", "link /data/new -> /data/old,"]


# --- other sections ----------------------------------------------------------------------


def _section(text: str, title: str) -> list[str]:
    """The stripped lines of one section (up to the blank line that ends it)."""
    lines = text.splitlines()
    start = lines.index(f"  # ---- {title} ----") + 1
    end = lines.index("", start)
    return [ln.strip() for ln in lines[start:end]]


def test_capabilities_normalised_and_unknown_dropped() -> None:
    m = BehaviourModel(capabilities={"CAP_NET_ADMIN", "sys_admin", "21", "cap_bpf", "cap_bogus"})
    r = render_apparmor("p", m)
    compile_check(r.text)
    assert _section(r.text, "CAPABILITY") == [
        "capability bpf,", "capability net_admin,", "capability sys_admin,"]
    assert r.drops.counts == {"capability:unknown-capability": 1}


def test_network_rules_from_sockets() -> None:
    m = BehaviourModel(networks={
        ("AF_INET", "SOCK_STREAM", 6), ("10", "2", 17), ("AF_UNIX", "524289", 0),
        ("AF_NETLINK", "SOCK_RAW", 0), ("inet", "", 1), ("inet6", "", 132),
        ("AF_INET", "SOCK_STREAM", 132), ("AF_DECnet", "SOCK_STREAM", 0),
        ("AF_INET", "SOCK_DCCP", 33), ("AF_PACKET", "", 0), ("inet6", "", 58),
    })
    r = render_apparmor("p", m)
    compile_check(r.text)
    assert _section(r.text, "NETWORK") == [
        "network inet icmp,", "network inet stream,", "network inet6 dgram,", "network inet6,",
        "network netlink raw,", "network packet,", "network unix stream,"]
    assert r.drops.by_reason() == {
        "unknown-family": 1, "unknown-socket-type": 1, "protocol-covered-by-type": 1,
        "protocol-has-no-name": 2}
    plain = render_apparmor("p", m, options=RenderOptions(allow_all_network=True))
    assert _section(plain.text, "NETWORK") == ["network,"]


def test_observed_peers_add_ptrace_and_signal_rules() -> None:
    m = BehaviourModel()
    m.ptraces = {"p": {"read"}, "other-profile": {"read", "trace"}, "evil*": {"read"},
                 "cri-containerd.apparmor.d": {"readby"}}
    m.signals = {"unconfined": ({"receive"}, {"SIGTERM"}),
                 "p": ({"send"}, {"9"}),
                 "sidecar": ({"send", "receive"}, {"SIGTERM", "SIGUSR1", "37", "SIGBOGUS"}),
                 "x y": ({"send"}, {"SIGHUP"}),
                 "quiet": ({"send"}, {"SIGBOGUS"})}
    r = render_apparmor("p", m)
    compile_check(r.text)
    assert _section(r.text, "PTRACE")[-3:] == [
        "## observed peers",
        "ptrace (readby) peer=cri-containerd.apparmor.d,",
        "ptrace (trace,read) peer=other-profile,"]
    assert _section(r.text, "SIGNAL")[-2:] == [
        "## observed peers", "signal (send,receive) set=(rtmin+5,term,usr1) peer=sidecar,"]
    assert r.drops.by_reason() == {"invalid-peer": 2, "unknown-signal": 2, "nothing-to-allow": 1}
    quiet = render_apparmor("p", m, options=RenderOptions(observed_peers=False))
    assert "## observed peers" not in quiet.text


def test_mount_rules() -> None:
    m = BehaviourModel(mounts={
        ("mount", "/mnt/data/", "tmpfs"), ("mount", "/mnt/any/", ""), ("umount", "/mnt/x/", ""),
        ("remount", "/mnt/data/", "tmpfs"), ("pivot_root", "/newroot/", ""),
        ("mount", "/mnt/bad/", "tmp fs,\n"), ("mount", "/mnt/a b/", "ext4")})
    r = render_apparmor("p", m)
    compile_check(r.text)
    assert _section(r.text, "ADDITIONAL") == [
        "umount,", "mount -> /mnt/any/,", 'mount fstype=ext4 -> "/mnt/a b/",',
        "mount fstype=tmpfs -> /mnt/data/,", "pivot_root /newroot/,", "remount /mnt/data/,"]
    assert r.drops.counts == {"mount:invalid-fstype": 1}


@pytest.mark.parametrize(
    "name", ["", "Demo", "a b", "x,", "a{b}", "p\n  /** rwx,", "-x", "x-", "unconfined", "a" * 254])
def test_profile_name_is_validated(name: str) -> None:
    with pytest.raises(ProfileNameError):
        render_apparmor(name, BehaviourModel())


def test_empty_model_still_compiles() -> None:
    r = render_apparmor("varmor-ns-empty", BehaviourModel())
    compile_check(r.text)
    assert r.rule_count == 4  # the fixed peer rules and umount


# --- hostile names --------------------------------------------------------------------------

HOSTILE = [
    "/tmp/x rw,\n  /** rwx,\n",
    '/tmp/"quoted" name',
    "/tmp/a b",
    "/tmp/{a,b}",
    "/tmp/[abc]",
    "/tmp/*",
    "/tmp/?",
    "/tmp/^x",
    "/tmp/#include <abstractions/base>",
    "/tmp/@{HOME}",
    "/tmp/ctl\x01\x1b[31m\x7f",
    "/tmp/ünïcødé€",
    "/tmp/ends-with-backslash\\",
    '/tmp/x" rw,\n  "/etc/shadow',
    "/tmp/x}\n}\nprofile evil {\n  /** rwx,\n",
]


def test_hostile_names_give_exactly_their_own_rules() -> None:
    m = BehaviourModel()
    for i, p in enumerate(HOSTILE):
        m.files[(escape_literal(p), "", bool(i % 2))] = {"r"}
        m.executions.add(escape_literal(p))
    r = render_apparmor("p", m)
    compile_check(r.text)
    assert r.drops.total == 0
    assert len(_section(r.text, "FILE")) == len(HOSTILE)
    assert len(_section(r.text, "EXEC")) == len(HOSTILE)
    assert [ln for ln in r.text.splitlines() if "profile " in ln.split('"')[0]] == [
        "profile p flags=(attach_disconnected,mediate_deleted) {"]
    assert "/** rwx" not in r.text
    assert r.text.isascii()


def test_unreadable_names_are_dropped_and_counted() -> None:
    m = BehaviourModel()
    m.files[("/tmp/bad\ufffdname", "", False)] = {"r"}  # producer could not decode it
    m.files[("/tmp/{a}", "", False)] = {"r"}  # malformed pattern
    m.files[("relative/path", "", False)] = {"r"}
    m.files[("/tmp/ok", "", False)] = {"r"}
    m.executions.add("/tmp/\ufffd")
    r = render_apparmor("p", m)
    compile_check(r.text)
    assert _section(r.text, "FILE") == ["/tmp/ok r,"]
    assert _section(r.text, "EXEC") == []
    assert r.drops.by_reason()["lossy-utf8"] == 2
    assert r.drops.total == 4


def test_patterns_that_would_stall_the_parser_are_dropped() -> None:
    m = BehaviourModel()
    m.files[("/**a" + "?" * 20, "", False)] = {"r"}
    m.files[("/x/*" + "[ab]" * 9, "", False)] = {"r"}
    m.files[("/y/" + "?" * 12, "", False)] = {"r"}  # no star: linear, kept
    m.files[("/z/" + "\\?" * 12 + "*", "", False)] = {"r"}  # literal question marks
    r = render_apparmor("p", m)
    compile_check(r.text)
    assert r.drops.by_reason() == {"too-complex": 2}
    assert len(_section(r.text, "FILE")) == 2


def test_path_operations_render_as_apparmor_asks() -> None:
    # The events the tracer and the audit source make of mkdir, rename, link, mmap,
    # locks, chmod and a unix socket (tests/test_tracer_paths.py records them live).
    def file(path: str, perms: str, owner: bool = True, old: str | None = None) -> dict:
        extra = {"old_path": old} if old else {}
        return make_event("file", profile="p", path=path, perms=perms, owner=owner, **extra)

    events = [
        file("/etc/", "r"),                       # ls /etc: a directory rule
        file("/srv/d1/", "w"),                    # mkdir, rmdir, chmod of a directory
        file("/srv/f1", "rw", owner=False),       # rename's old name
        file("/srv/f2", "w", owner=False),        # its new name
        file("/srv/f3", "l", owner=False, old="/srv/f2"),  # hard link
        file("/opt/app/plugin.so", "r"),
        file("/opt/app/plugin.so", "m"),          # mapped executable
        file("/var/lib/app/db.lock", "r"),
        file("/var/lib/app/db.lock", "wk"),       # exclusive lock
        file("/run/app.sock", "rw", owner=False),  # connect by path
    ]
    model = reduce_events(events)["p"]
    assert _file_lines(model) == [
        "/run/app.sock rw,",
        "/srv/f1 rw,",
        "/srv/f2 w,",
        "link /srv/f3 -> /srv/f2,",
        "owner /etc/ r,",
        "owner /opt/app/plugin.so mr,",
        "owner /srv/d1/ w,",
        "owner /var/lib/app/db.lock rwk,",
    ]
