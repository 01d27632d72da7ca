"""``armorflow report``: text and HTML summaries of real models, the HTML rendered by
headless Debian chromium (screenshot and DOM) without errors."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from armorflow.aaglob import escape_literal
from armorflow.cli import app
from armorflow.events import read_events
from armorflow.model import BehaviourModel, reduce_events
from armorflow.render import render_apparmor
from armorflow.users.report import load_models
from support.apparmor_check import compile_check

RECORDING = Path(__file__).resolve().parents[1] / "docs" / "query-example.jsonl"
DB, WEB = "varmor-default-db", "varmor-default-web"


def _collapse(path: str) -> str:
    """A stand-in for the classifier: two trees become globs, the rest stays literal."""
    if path.startswith("/var/lib/postgresql/data/base/"):
        return "/var/lib/postgresql/data/base/**"
    if path.startswith("/var/cache/nginx/client_temp/"):
        return "/var/cache/nginx/client_temp/*"
    return escape_literal(path)


@pytest.fixture(scope="module")
def models() -> dict[str, BehaviourModel]:
    return reduce_events(read_events(RECORDING), _collapse)


@pytest.fixture
def model_dir(tmp_path: Path, models: dict[str, BehaviourModel]) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    # Laid out as the file sink writes: DIR/NAMESPACE/NAME.model.json, with the rendered
    # profiles beside each model, which must not be taken for models.
    for name, model in models.items():
        folder = directory / ("default" if name == WEB else "other-ns")
        folder.mkdir()
        (folder / f"{name}.model.json").write_bytes(orjson.dumps(model.to_dict()))
        (folder / f"{name}.seccomp.json").write_text('{"defaultAction": "SCMP_ACT_ERRNO"}')
    return directory


def _flat(text: str) -> str:
    """Terminal output without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _report(*args: str) -> str:
    result = CliRunner().invoke(app, ["report", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


def test_text_report_shows_counts_rules_and_collapses(model_dir: Path) -> None:
    out = _report(str(model_dir))
    assert f"profile {DB}" in out and f"profile {WEB}" in out
    assert re.search(r"executions\s+│\s+3", out)  # db: sh, pg_isready, postgres
    assert "/var/lib/postgresql/data/base/5/16384  ->  /var/lib/postgresql/data/base/**" in out
    assert "/var/cache/nginx/client_temp/0000000001  ->  /var/cache/nginx/client_temp/*" in out
    assert "owner /var/lib/postgresql/data/base/** rw," in out
    assert "observed: fsync, futex, read, write;" in _flat(out)  # db's syscalls
    assert re.search(r"allows \d+ syscall\(s\)", out)


def test_loads_files_dirs_and_plain_dynamic_results(
    tmp_path: Path, models: dict[str, BehaviourModel]
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.json").write_bytes(orjson.dumps(models[DB].to_dynamic_result()))
    (plain / "notes.json").write_text('["not a model"]')
    skipped: list[str] = []
    (loaded,) = load_models(plain, skipped)
    assert loaded.name == DB
    assert loaded.model.to_dynamic_result() == models[DB].to_dynamic_result()
    assert len(skipped) == 1 and "notes.json" in skipped[0]
    (single,) = load_models(plain / "a.json")
    assert single.name == DB
    result = CliRunner().invoke(app, ["report", str(plain / "notes.json")])
    assert result.exit_code != 0 and "not a model document" in _flat(result.output)
    broken = tmp_path / "broken.model.json"
    broken.write_text('{"dynamicResult": {"apparmor": {"files": [{"perms": "r"}]}}}')
    result = CliRunner().invoke(app, ["report", str(broken)])
    assert result.exit_code != 0 and "malformed model document" in _flat(result.output)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "does not exist" in _flat(result.output)


def test_reported_apparmor_profile_compiles(
    models: dict[str, BehaviourModel], apparmor_parser: str
) -> None:
    compile_check(render_apparmor(DB, models[DB]).text)


def _png_pixels_vary(png: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decoded image data)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        body = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium missing: run make setup")
    with tempfile.TemporaryDirectory() as profile_dir:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile_dir}", "--enable-logging=stderr",
             "--v=0", *args],
            capture_output=True, text=True, timeout=90, check=False,
        )


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(model_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    out = _report(str(model_dir), "--html", str(page), "--events", str(RECORDING))
    assert f"wrote {page}" in out
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )  # self-contained: nothing to fetch, nothing to run

    shot = tmp_path / "report.png"
    run = _chromium("--window-size=1000,1800", f"--screenshot={shot}", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert "Page load failed" not in run.stderr
    width, height, distinct = _png_pixels_vary(shot.read_bytes())
    assert (width, height) == (1000, 1800)
    assert distinct > 64, "the screenshot is (nearly) blank"

    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Events per kind over the window" in dom.stdout
    assert "46 events over 139.0 s" in dom.stdout
    assert dom.stdout.count("<svg") == 1 + 1 + 2  # timeline, kinds, one per model
    assert f"profile {DB} flags=" in dom.stdout and f"profile {WEB} flags=" in dom.stdout
    # The web model: both nginx pods' client_temp file collapsed to one glob.
    assert "/var/cache/nginx/client_temp/0000000001</td><td>/var/cache/nginx/client_temp/*" in (
        dom.stdout
    )
    # 30 bins over 139 s: the first (4.6 s) holds the start-up execs at 1 s to 5 s.
    assert "<title>exec: 5</title>" in dom.stdout
    # two profiles: an index links to each, with how many rules each has to review
    assert '<nav id="index">' in dom.stdout
    links = re.findall(r'<a href="#(model-\d)">([^<]+)</a>', dom.stdout)
    assert sorted(name for _anchor, name in links) == [DB, WEB]
    assert all(f'id="{anchor}"' in dom.stdout for anchor, _name in links)
    assert "Rules to review before enforcing" in dom.stdout
    # Each rule with when it was first seen and the pods that made it: both nginx replicas
    # ran nginx, each on its own node.
    assert "Where each rule came from" in dom.stdout
    rows = re.findall(r"<tr><td>exec</td><td>/usr/sbin/nginx</td><td>([^<]+)</td>"
                      r"<td>([^<]+)</td><td>default</td><td>([^<]+)</td><td>nginx</td></tr>",
                      dom.stdout)
    assert [(node, pod) for _when, node, pod in rows] == [
        ("n1", "web-7d4b9-abcde"), ("n2", "web-7d4b9-fghij")]
    assert rows[0][0].endswith("Z")


def test_reports_what_the_offline_model_verb_writes(tmp_path: Path) -> None:
    """End to end with the real classifier: ``armorflow model`` lays models out, and
    ``report`` finds them all and shows what the classifier collapsed."""
    out_dir = tmp_path / "offline"
    result = CliRunner().invoke(app, ["model", "--from", str(RECORDING), "--out", str(out_dir)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = _report(str(out_dir))
    assert f"profile {DB}" in out and f"profile {WEB}" in out
    collapsed = re.findall(r"^ {2}(\S.*)  ->  (\S+)$", out, flags=re.M)
    assert collapsed, out
    for examples, pattern in collapsed:
        assert all(p.startswith("/") for p in examples.split(", "))
        assert any(c in pattern for c in "*?[{"), pattern


def _hostile_model() -> BehaviourModel:
    from armorflow.events import make_event

    model = BehaviourModel()
    for kind, fields in (
        ("file", {"path": "/etc/shadow", "perms": "r", "owner": False}),
        ("file", {"path": "/etc/ld.so.preload", "perms": "w", "owner": False}),
        ("file", {"path": "/root/.ssh/authorized_keys", "perms": "a", "owner": False}),
        ("file", {"path": "/tmp/scratch", "perms": "rw", "owner": True}),
        ("capability", {"name": "sys_module"}),
        ("capability", {"name": "chown"}),
        ("syscall", {"name": "read"}),
    ):
        model.add(make_event(kind, profile="hostile", **fields))
    return model


def test_sensitive_rules_are_flagged_for_review(tmp_path: Path) -> None:
    path = tmp_path / "hostile.model.json"
    path.write_bytes(orjson.dumps(_hostile_model().to_dict()))
    result = CliRunner().invoke(app, ["report", str(path), "-o", "json"])
    assert result.exit_code == 0, result.output
    (doc,) = orjson.loads(result.stdout)["models"]
    flagged = {(f["kind"], f["rule"].split()[0]) for f in doc["sensitive"]}
    assert flagged == {("file", "/etc/shadow"), ("file", "/etc/ld.so.preload"),
                       ("file", "/root/.ssh/authorized_keys"), ("capability", "sys_module")}
    why = {f["rule"].split()[0]: f["why"] for f in doc["sensitive"]}
    assert why["/etc/ld.so.preload"].startswith("system-write")
    assert why["/root/.ssh/authorized_keys"].startswith(("home-write", "secret-store"))
    # the machine-readable report carries what the text one shows
    assert doc["profile"] == "hostile" and "read" in doc["seccomp_allowed"]
    assert "clone3" not in doc["seccomp_allowed"]  # answered ENOSYS, not allowed
    text = _flat(_report(str(path)))
    assert "rules to review before enforcing: 4" in text


def test_diff_of_two_models(tmp_path: Path) -> None:
    from armorflow.events import make_event

    before, after = tmp_path / "a.model.json", tmp_path / "b.model.json"
    old = _hostile_model()
    new = _hostile_model()
    new.add(make_event("file", profile="hostile", path="/tmp/scratch", perms="a", owner=True))
    new.add(make_event("exec", profile="hostile", path="/usr/bin/curl"))
    before.write_bytes(orjson.dumps(old.to_dict()))
    after.write_bytes(orjson.dumps(new.to_dict()))
    same = CliRunner().invoke(app, ["report", "--diff", str(before), str(before)])
    assert same.exit_code == 0 and "0 added, 0 removed, 0 changed" in same.stdout
    changed = CliRunner().invoke(app, ["report", "--diff", str(before), str(after)])
    assert changed.exit_code == 1
    assert "+ exec /usr/bin/curl" in changed.stdout
    assert "~ file /tmp/scratch True: rw -> rwa" in changed.stdout
    assert "2 added" not in changed.stdout and "1 added, 0 removed, 1 changed" in changed.stdout
    as_json = CliRunner().invoke(app, ["report", "--diff", str(after), str(before), "-o", "json"])
    doc = orjson.loads(as_json.stdout)
    assert doc["removed"] == [[["exec", "/usr/bin/curl"], None]]
