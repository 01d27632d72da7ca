"""The classifier's safety policy: random-looking names that a container writes or runs in
sensitive places never become a glob that widens write or exec there, whichever step
proposes it (way in, learned pattern, sibling collapse, a stored glob); every refusal is
counted and named, and ``armorflow collapse --explain`` and ``armorflow report`` say which
rule or feature made each glob."""

from __future__ import annotations

import base64
import string
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from armorflow.aaglob import has_wildcard, matches
from armorflow.cli import app
from armorflow.events import Event, make_event
from armorflow.model import BehaviourModel
from armorflow.pipeline.classifier import load_default, safety
from armorflow.pipeline.classifier.cli import register
from armorflow.pipeline.classifier.origins import model_origins
from armorflow.pipeline.offline import model_recording
from armorflow.pipeline.stages import ClassifierStage, ClosedWindow, Stages
from support.apparmor_check import compile_check

REPO = Path(__file__).resolve().parents[1]
PROFILE = "hostile"
_ALNUM = string.ascii_letters + string.digits

#: (place, permission letters a hostile container uses there, files a widened rule there
#: would expose). Exec is the ``exec`` event kind, written "x".
SENSITIVE: list[tuple[str, str, tuple[str, ...]]] = [
    ("/etc", "w", ("/etc/shadow", "/etc/ld.so.preload")),
    ("/etc/cron.d", "wa", ("/etc/cron.d/evil",)),
    ("/etc", "l", ("/etc/sudoers",)),
    ("/usr/bin", "x", ("/usr/bin/sh", "/usr/bin/sudo")),
    ("/usr/local/bin", "x", ("/usr/local/bin/kubectl",)),
    ("/usr/libexec", "x", ("/usr/libexec/sudo",)),
    ("/sbin", "x", ("/sbin/init",)),
    ("/usr/bin", "w", ("/usr/bin/sh",)),
    ("/usr/lib/x86_64-linux-gnu", "m", ("/usr/lib/x86_64-linux-gnu/libevil.so",)),
    ("/root", "w", ("/root/.bashrc",)),
    ("/root/.ssh", "w", ("/root/.ssh/authorized_keys",)),
    ("/root/.ssh", "r", ("/root/.ssh/id_ed25519",)),
    ("/home/app/.aws", "r", ("/home/app/.aws/credentials",)),
    ("/home/app", "a", ("/home/app/.profile",)),
    ("/var/lib/kubelet/pods", "w", ("/var/lib/kubelet/pods/other",)),
    ("/run/secrets/kubernetes.io/serviceaccount", "w",
     ("/run/secrets/kubernetes.io/serviceaccount/token",)),
    ("/boot", "w", ("/boot/vmlinuz",)),
    ("", "w", ("/etc", "/bin")),
    ("", "r", ("/etc", "/bin")),
    ("/sys/devices/virtual", "w", ("/sys/devices/virtual/net/lo/mtu",)),
    ("/sys/kernel", "w", ("/sys/kernel/mm/ksm/run",)),
    ("/proc/sys/kernel", "w", ("/proc/sys/kernel/core_pattern",)),
]

# --- random-looking names, in the shapes real generators give them ------------------------

hex_ids = st.text("0123456789abcdef", min_size=16, max_size=64).filter(
    lambda s: any(c.isdigit() for c in s)
)
uuids = st.uuids().map(str)
mktemp = st.text(_ALNUM, min_size=10, max_size=10).map(lambda s: f"tmp.{s}")
php = st.text(_ALNUM, min_size=6, max_size=6).map(lambda s: f"php{s}")
go_temp = st.tuples(st.sampled_from(["config", "kubelet-detect", "upload"]),
                    st.integers(0, 2**32 - 1)).map(lambda t: f"{t[0]}{t[1]}")
tokens = st.binary(min_size=12, max_size=48).map(
    lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
)
anything = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                   min_size=1, max_size=24).filter(lambda s: s not in (".", ".."))
hostile_names = st.one_of(hex_ids, uuids, mktemp, php, go_temp, tokens, anything)
#: Numbered siblings (``job0001`` ...): the sibling collapse merges ten or more.
numbered = st.tuples(st.sampled_from(["job", "cache", "x"]), st.integers(10, 14)).map(
    lambda t: [f"{t[0]}{i:04d}" for i in range(1, t[1] + 1)]
)


def _events(place: str, perms: str, names: Iterable[str]) -> list[Event]:
    out: list[Event] = []
    for ts, name in enumerate(names, start=1):
        path = f"{place}/{name}"
        if perms == "x":
            out.append(make_event("exec", ts=ts, profile=PROFILE, path=path))
        else:
            out.append(make_event("file", ts=ts, profile=PROFILE, path=path, perms=perms,
                                  owner=True))
    return out


def _close(events: list[Event]) -> ClosedWindow:
    (window,) = model_recording(events, Stages.default())
    return window


def _rules(model: BehaviourModel) -> list[tuple[str, set[str]]]:
    """(pattern, permission letters) of every rule, exec rules as "x"."""
    rules = [(path, set(perms)) for (path, _old, _owner), perms in model.files.items()]
    rules += [(old, set(perms)) for (_p, old, _o), perms in model.files.items() if old]
    rules += [(path, {"x"}) for path in model.executions]
    return rules


def _assert_nothing_widened(model: BehaviourModel, perms: str, observed: set[str],
                            probes: Iterable[str]) -> None:
    """No rule carrying one of ``perms`` matches a file the workload never touched, and
    every observed path is still allowed."""
    rules = _rules(model)
    for probe in probes:
        if probe in observed:
            continue
        for pattern, letters in rules:
            assert not (letters & set(perms) and matches(pattern, probe)), (
                f"{pattern} {''.join(sorted(letters))} widens to {probe}"
            )
    for path in observed:
        assert any(set(perms) <= letters and matches(pattern, path)
                   for pattern, letters in rules), f"{path} ({perms}) lost"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(SENSITIVE),
    names=st.lists(hostile_names, min_size=1, max_size=8, unique=True),
    siblings=st.one_of(st.just([]), numbered),
    fresh=hostile_names,
)
def test_hostile_names_never_widen_a_sensitive_place(
    case: tuple[str, str, tuple[str, ...]], names: list[str], siblings: list[str], fresh: str
) -> None:
    place, perms, exposed = case
    window = _close(_events(place, perms, [*names, *siblings]))
    observed = {f"{place}/{n}" for n in [*names, *siblings]}
    # A name the workload never used, of the same kind, and the files that matter there.
    _assert_nothing_widened(window.model, perms, observed, [*exposed, f"{place}/{fresh}"])
    assert window.apparmor is not None
    compile_check(window.apparmor)


def test_the_names_are_random_enough_to_collapse_elsewhere() -> None:
    # Control for the test above: in /tmp the same kinds of names do become globs, so
    # nothing widening in the sensitive places is the policy's doing, not the classifier's.
    names = [
        "3c5928afbbefea1b0acf34b9acd866d2", "00112233-4455-6677-8899-aabbccddeeff",
        "tmp.aB3xY9Qz0P", "php04Ha0a", *[f"job{i:04d}" for i in range(1, 13)],
    ]
    for place in ("/tmp", "/var/cache/app"):
        window = _close(_events(place, "w", names))
        rules = _rules(window.model)
        # every name is in a glob (one may cover the others: /tmp/* from the digest
        # takes tmp.* and job* in, fold_subsumed), none kept literal
        assert all(has_wildcard(p) for p, _ in rules), rules
        assert all(any(matches(p, f"{place}/{n}") for p, _ in rules) for n in names)
        assert "collapsesRefused" not in window.counts
    window = _close(_events("/etc", "w", names))
    assert not any(has_wildcard(p) for p, _ in _rules(window.model))
    assert window.counts["collapsesRefused"] == len(names)


def test_reads_still_collapse_where_only_writes_are_refused() -> None:
    certs = [f"{h}.0" for h in ("3513523f", "4042bcee", "76faf6c0")]
    names = ["3c5928afbbefea1b0acf34b9acd866d2", "00112233-4455-6677-8899-aabbccddeeff"]
    window = _close(_events("/etc/app", "r", names) + _events("/etc/ssl/certs", "r", certs))
    assert "/etc/app/*" in {p for p, _ in _rules(window.model)}
    assert "collapsesRefused" not in window.counts


def test_a_read_glob_never_takes_in_a_later_write() -> None:
    # The read makes /etc/app/* (allowed); the model learns it as the directory's
    # pattern. A later write of a stable name there must not fold into it.
    hexname = "3c5928afbbefea1b0acf34b9acd866d2"
    events = _events("/etc/app", "r", [hexname]) + _events("/etc/app", "w", ["app.conf"])
    events += _events("/etc/app", "w", ["00112233-4455-6677-8899-aabbccddeeff"])
    window = _close(events)
    files = {p: perms for (p, _o, _w), perms in window.model.files.items()}
    assert files["/etc/app/*"] == {"r"}
    assert files["/etc/app/app.conf"] == {"w"}
    assert files["/etc/app/00112233-4455-6677-8899-aabbccddeeff"] == {"w"}
    # ...and the same in the other order.
    window = _close(list(reversed(events)))
    assert {p: perms for (p, _o, _w), perms in window.model.files.items()} == files


def test_sibling_collapse_is_refused_for_writes_and_counted() -> None:
    jobs = [f"job{i:04d}" for i in range(1, 13)]
    window = _close(_events("/etc/cron.d", "w", jobs))
    assert {p for p, _ in _rules(window.model)} == {f"/etc/cron.d/{j}" for j in jobs}
    assert window.counts["collapsesRefused"] == len(jobs)
    assert any("system-write" in n and "sibling collapse" in n for n in window.notes)
    read = _close(_events("/etc/cron.d", "r", jobs))
    assert {p for p, _ in _rules(read.model)} == {"/etc/cron.d/job*"}


def test_root_sys_and_proc_globs_stay_documented() -> None:
    events = [
        make_event("file", profile=PROFILE, path="/10676/task/10676/attr/apparmor/exec",
                   perms="r", owner=True),
        make_event("file", profile=PROFILE, path="/proc/1106048/fdinfo/10", perms="rw",
                   owner=True),
        make_event("file", profile=PROFILE, path="/sys/devices/pci0000:00/0000:00:03.0/x",
                   perms="r", owner=True),
        make_event("file", profile=PROFILE, path="/sys/devices/virtual/net/lo/mtu",
                   perms="w", owner=True),
    ]
    window = _close(events)
    files = {p: perms for (p, _o, _w), perms in window.model.files.items()}
    assert files == {
        "/10676/task/10676/attr/apparmor/exec": {"r"},  # root-glob: /*/task/... refused
        "/proc/*/fdinfo/*": {"r", "w"},                   # documented pid/fd positions
        "/sys/devices/**": {"r"},                         # documented, read only
        "/sys/devices/virtual/net/lo/mtu": {"w"},
    }
    rules = {n.split("safety rule ")[1].split(":")[0] for n in window.notes}
    assert rules == {"root-glob", "sys-devices-write"}


def test_a_stored_glob_that_breaks_the_policy_becomes_its_examples() -> None:
    model = BehaviourModel.from_dict({
        "dynamicResult": {"apparmor": {"files": [
            {"path": "/etc/*", "permissions": ["w"], "owner": True},
            {"path": "/tmp/tmp*", "permissions": ["w"], "owner": True},
        ], "executions": ["/usr/bin/*"]}},
        "collapsed": {"/etc/*": ["/etc/a1b2c3d4e5f6a7b8c9"], "/usr/bin/*": []},
    })
    window = ClosedWindow(profile=PROFILE, namespace="ns", policy={}, enforcer="AppArmor",
                          start_ts=0, end_ts=1, model=model)
    ClassifierStage().close(window)
    assert {k[0] for k in model.files} == {"/etc/a1b2c3d4e5f6a7b8c9", "/tmp/tmp*"}
    assert model.executions == set()
    assert window.counts["collapsesRefused"] == 2


def test_way_in_refusals_are_counted_per_rule() -> None:
    stage = ClassifierStage()
    model = BehaviourModel()
    for event in _events("/usr/bin", "x", ["tmp.aB3xY9Qz0P", "tmp.Zq81LmN0xa"]):
        model.add(event, stage.path_mapper())
    assert model.executions == {"/usr/bin/tmp.aB3xY9Qz0P", "/usr/bin/tmp.Zq81LmN0xa"}
    assert stage.mapper.refused["system-exec"] == 2


@pytest.mark.parametrize(
    ("pattern", "perms", "rule"),
    [
        ("/etc/*", "w", "system-write"),
        ("/etc/nginx/*.conf", "a", "system-write"),
        ("/etc/*", "r", "secret-files"),  # can name /etc/shadow
        ("/etc/app/*", "r", None),
        ("/etc/s*", "r", "secret-files"),
        ("/root/*", "r", "secret-files"),  # can name /root/.bash_history
        ("/home/alice/*", "r", "secret-files"),
        ("/home/alice/src/*", "r", None),
        ("/usr/bin/*", "x", "system-exec"),
        ("/usr/lib/x86_64-linux-gnu/lib*.so", "m", "system-exec"),
        ("/usr/share/doc/*", "r", None),
        ("/root/.ssh/*", "r", "secret-store"),
        ("/app/.kube/*", "r", "secret-store"),
        ("/home/*/notes", "w", "home-write"),
        ("/var/*", "w", "kubernetes-secrets-write"),  # can name /var/lib, the place's parent
        ("/var/log/*", "w", None),
        ("/run/secrets/kubernetes.io/serviceaccount/..*/token", "r", None),
        ("/var/run/secrets/x/*", "w", "kubernetes-secrets-write"),
        ("/*", "r", "root-glob"),
        ("/**", "r", "root-glob"),
        ("/t*/x", "w", "root-glob"),
        ("relative/*", "r", "root-glob"),
        ("/sys/devices/**", "r", None),
        ("/sys/devices/**", "w", "sys-devices-write"),
        ("/sys/fs/cgroup/*", "r", "sys-glob"),
        ("/proc/*/task/*/attr/apparmor", "w", None),
        ("/proc/sys/kernel/*", "r", "proc-glob"),
        ("/proc/*/fd*", "r", "proc-glob"),
        ("/tmp/tmp*", "wx", None),
        ("/tmp/*/foo", "w", None),
        ("/etc/shadow", "w", None),  # a literal path is never refused
        ("/{etc,tmp}/*", "w", "root-glob"),
        ("/e{tc,x}/*", "w", "root-glob"),
        ("/usr/{bin,share}/*", "x", "system-exec"),
        ("/x/{a/b,c}/*", "r", "root-glob"),  # an alternation spanning a / is not bounded
    ],
)
def test_policy_table(pattern: str, perms: str, rule: str | None) -> None:
    found = safety.refusal(pattern, perms)
    assert (found.name if found else None) == rule


def test_docs_hold_the_policy_table() -> None:
    docs = (REPO / "docs" / "classifier.md").read_text()
    assert safety.policy_table() in docs


# --- explanations --------------------------------------------------------------------------


def _cli() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root so that sub-commands keep their names."""

    register(root)
    return root


def test_collapse_explain_names_the_rule_that_kept_a_path_literal() -> None:
    path = "/etc/3c5928afbbefea1b0acf34b9acd866d2"
    res = CliRunner().invoke(_cli(), ["collapse", "--explain", "--perms", "w"], input=path + "\n")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == path
    assert any("hex>=16" in ln for ln in lines)
    assert any("kept literal by safety rule system-write" in ln for ln in lines)
    res = CliRunner().invoke(_cli(), ["collapse", "--perms", "r"], input=path + "\n")
    assert res.output.splitlines() == [path]  # /etc/* r could name /etc/shadow
    deeper = "/etc/app/3c5928afbbefea1b0acf34b9acd866d2"
    res = CliRunner().invoke(_cli(), ["collapse", "--perms", "r"], input=deeper + "\n")
    assert res.output.splitlines() == ["/etc/app/*"]
    res = CliRunner().invoke(_cli(), ["collapse", "--perms", "q"], input=path + "\n")
    assert res.exit_code != 0


def test_collapse_explain_names_the_sibling_collapse_and_the_limits() -> None:
    paths = [f"/etc/cron.d/job{i:04d}" for i in range(1, 13)]
    res = CliRunner().invoke(_cli(), ["collapse", "--explain", "--siblings", "10"],
                             input="\n".join(paths) + "\n")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == "/etc/cron.d/job*"
    assert "sibling collapse: /etc/cron.d/job0001 -> /etc/cron.d/job*" in res.output
    assert "system-write refuses wal" in res.output


def test_origins_say_which_rule_or_feature_made_each_glob() -> None:
    events = _events("/tmp", "w", ["3c5928afbbefea1b0acf34b9acd866d2"])
    events += _events("/var/cache/app", "w", [f"job{i:04d}" for i in range(1, 13)])
    events += _events("/proc/77/fd", "r", ["3"])
    window = _close(events)
    origins = {o.pattern: o.describe() for o in model_origins(window.model, load_default())}
    assert "hex>=16" in origins["/tmp/*"]
    assert "sibling collapse" in origins["/var/cache/app/job*"]
    assert "/proc proc/<n>" in origins["/proc/*/fd/*"] and "/proc fd/<n>" in origins[
        "/proc/*/fd/*"]


def test_report_shows_origins_and_refusals(tmp_path: Path) -> None:
    jobs = [f"job{i:04d}" for i in range(1, 13)]
    events = _events("/etc/cron.d", "w", jobs) + _events("/tmp", "w", ["php04Ha0a"])
    events += _events("/usr/bin", "x", ["tmp.aB3xY9Qz0P"])
    window = _close(events)
    model_file = tmp_path / f"{PROFILE}.model.json"
    model_file.write_bytes(orjson.dumps(window.model.to_dict()))
    html = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(model_file), "--html", str(html)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "kept literal by the safety policy: 13 rule(s)" in out
    assert "exec /usr/bin/tmp.aB3xY9Qz0P (x) kept literal by safety rule system-exec" in out
    assert "/etc/cron.d/job0001 (w) kept literal by safety rule system-write" in out
    assert "/tmp/php*:" in out and "'php04Ha0a': classifier:" in out
    page = html.read_text()
    assert "Kept literal by the safety policy" in page and "system-exec" in page
    assert "/tmp/php*" in page


# --- model-level context: the access mode decides how soon siblings merge ---------------------


def test_siblings_the_workload_writes_merge_sooner_than_those_it_reads() -> None:
    written = [f"job{i:04d}" for i in range(1, 5)]
    window = _close(_events("/var/spool/app", "w", written))
    assert {p for p, _ in _rules(window.model)} == {"/var/spool/app/job*"}
    assert "sibling collapse" in model_origins(window.model, load_default())[0].describe()
    # The same four names only read are a fixed set the image ships: left alone.
    read = _close(_events("/usr/share/app", "r", written))
    assert {p for p, _ in _rules(read.model)} == {f"/usr/share/app/{n}" for n in written}
    # ...and written in a protected place, the policy still keeps them literal.
    cron = _close(_events("/etc/cron.d", "w", written))
    assert {p for p, _ in _rules(cron.model)} == {f"/etc/cron.d/{n}" for n in written}
    assert cron.counts["collapsesRefused"] == len(written)
    # Two are not yet a counter for the sibling collapse; the written-names pass
    # (classifier/written.py) merges them, because the workload made both.
    two = _close(_events("/var/spool/app", "w", written[:2]))
    assert {p for p, _ in _rules(two.model)} == {"/var/spool/app/job*"}
    assert two.counts["writtenGlobs"] == 1
    two_read = _close(_events("/usr/share/app", "r", written[:2]))
    assert not any(has_wildcard(p) for p, _ in _rules(two_read.model))
