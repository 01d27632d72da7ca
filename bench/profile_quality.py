"""Do learned profiles hold on a second, different run of real programs, and deny what
the programs never did? (issue #15 item 5, with the namespace probes of issue #17)

For each program (nginx with WebDAV uploads, redis with RDB snapshots, git, gcc, tar with
gzip/xz, sqlite3 in WAL mode, and three added later as held-out checks: sed/sort/split,
rsync and logrotate):

1. run 1 with one input mix under ``armorflow trace``, modeled with ``armorflow model``
   into an AppArmor profile and a Seccomp profile;
2. run 2, with another input mix (other file names, sizes and features of the same
   program), under the learned Seccomp profile (libseccomp, applied for real): it must
   exit 0 and its output checks must pass;
3. run 2 again under ``strace -f -y``: every (path, permission) it asks AppArmor for
   (``bench/pq_strace.py``) is checked against the profile's file rules and
   ``abstractions/base`` (``bench/aa_rules.py``); coverage is reported over all of them
   and without the *genuinely new content names* (below);
4. deny probes: reads, writes and execs the program never did, checked against the
   AppArmor rules, and namespace requests (unshare, clone, clone3 with ``CLONE_NEWUSER``
   and ``CLONE_NEWNS``, mount) made for real under the Seccomp profile.

Both runs of a program use the same fixed workload directory,
``/var/tmp/armorflow-pq/PROGRAM`` (wiped before each run), as a deployment's would be;
only the data inside differs. The traced command is a small C step runner
(``bench/pq_runner.c``, compiled here) that starts the programs, drives them (curl,
redis-cli) and stops them: no shell and no interpreter is involved, so the exec probes of
``/bin/sh``, ``bash`` and ``python3`` mean something.

**Genuinely new content names.** Each input mix declares the names it introduces:
the base names of the files and directories it puts in the workload directory or asks
the program to create (uploaded files, source files and the objects derived from their
names, trees to archive, branch and tag names, backup file names). A run-2 operation is
new content when its path lies inside the workload directory and one of its components
(after the workload directory) is a name that run 2's mix declares and run 1's does not,
or such a name followed by a suffix after a separator (``.``, ``-``, ``_``, ``~``: the
``copy.db-journal`` of ``copy.db``).
Nothing else is excluded: temporary names the programs make up themselves (``/tmp/cc*``,
``temp-PID.rdb``, git's object names, nginx's body temp files) and every name outside the
workload directory count.

    .venv/bin/python bench/profile_quality.py [-v] [-o json] [--only nginx,git] [--keep DIR]

Needs root (the eBPF tracer, namespaces) and installs missing programs from Debian.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from aa_rules import RuleSet  # noqa: E402
from pq_strace import STRACE_EXPR, Op, StraceOps  # noqa: E402

BASE = Path("/var/tmp/armorflow-pq")
BIN = BASE / "bin"
ARMORFLOW = str(REPO / ".venv" / "bin" / "armorflow")
PY = sys.executable
NGINX_PORT = 18731
REDIS_PORT = 16391

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000

# --- Seccomp: install an OCI profile on this process and exec ---------------------------

_ARCHES = {"SCMP_ARCH_X86_64": "X86_64", "SCMP_ARCH_X86": "X86", "SCMP_ARCH_X32": "X32"}


def seccomp_exec(profile_file: str, argv: Sequence[str]) -> NoReturn:
    """Load the profile's filter with libseccomp, then exec ``argv`` under it."""
    import seccomp

    profile = json.loads(Path(profile_file).read_text(encoding="utf-8"))

    def action(name: str, errno_ret: int | None) -> Any:
        if name == "SCMP_ACT_ALLOW":
            return seccomp.ALLOW
        if name == "SCMP_ACT_ERRNO":
            return seccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
        raise SystemExit(f"unsupported action {name}")

    filt = seccomp.SyscallFilter(action(profile["defaultAction"],
                                        profile.get("defaultErrnoRet")))
    native = int(seccomp.system_arch()) & 0xFFFFFFFF
    for arch in profile.get("architectures") or ():
        token = getattr(seccomp.Arch, _ARCHES[arch])
        if int(token) & 0xFFFFFFFF != native:
            filt.add_arch(token)
    for rule in profile.get("syscalls") or ():
        act = action(rule["action"], rule.get("errnoRet"))
        args = [seccomp.Arg(int(a["index"]), getattr(seccomp, a["op"].removeprefix("SCMP_CMP_")),
                            int(a.get("value", 0)), int(a.get("valueTwo", 0)))
                for a in rule.get("args") or ()]
        for name in rule["names"]:
            try:
                filt.add_rule(act, name, *args)
            except RuntimeError:
                print(f"seccomp: unknown syscall {name}", file=sys.stderr)
    filt.load()
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        os.write(2, f"seccomp exec {argv[0]} failed: {exc}\n".encode())
        os._exit(126)


# --- programs ------------------------------------------------------------------------------


@dataclass
class Mix:
    """One input mix: the runner's steps, the names it introduces, its output checks."""

    steps: list[list[str]]
    names: set[str]
    check: Callable[[Path], list[str]] = lambda w: []


@dataclass
class Program:
    name: str
    packages: dict[str, str]  # executable -> Debian package
    prepare: Callable[[Path, int], Mix]


#: curl failing on HTTP errors, quietly (every request of the nginx mixes).
CURL = ["curl", "-sS", "-f"]


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


def _rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _serve_and_upload(w: Path, site: dict[str, bytes], uploads: dict[str, bytes],
                      steps: list[list[str]], expect: dict[str, bytes]) -> None:
    """Write nginx's site, and add the steps that upload each file and download it back
    (the download must equal the upload)."""
    url = f"http://127.0.0.1:{NGINX_PORT}"
    for rel, data in site.items():
        _write(w / "html" / rel, data)
    for i, (rel, data) in enumerate(uploads.items()):
        _write(w / "input" / rel, data)
        steps.append(["run", *CURL, "-T", f"{w}/input/{rel}", f"{url}/upload/{rel}"])
        steps.append(["run", *CURL, "-o", f"{w}/dl/{i}", f"{url}/upload/{rel}"])
        expect[f"dl/{i}"] = data


def _expect_files(pairs: Mapping[str, bytes]) -> Callable[[Path], list[str]]:
    def check(w: Path) -> list[str]:
        bad = []
        for rel, data in pairs.items():
            p = w / rel
            if not p.is_file() or p.read_bytes() != data:
                bad.append(f"{rel} missing or different")
        return bad
    return check


def prepare_nginx(w: Path, mix: int) -> Mix:
    conf = f"""user root;
worker_processes 1;
daemon off;
pid {w}/run/nginx.pid;
error_log {w}/logs/error.log;
events {{ worker_connections 64; }}
http {{
  include /etc/nginx/mime.types;
  access_log {w}/logs/access.log;
  client_body_temp_path {w}/tmp/body 1 2;
  proxy_temp_path {w}/tmp/proxy;
  fastcgi_temp_path {w}/tmp/fastcgi;
  uwsgi_temp_path {w}/tmp/uwsgi;
  scgi_temp_path {w}/tmp/scgi;
  client_max_body_size 20m;
  server {{
    listen 127.0.0.1:{NGINX_PORT};
    root {w}/html;
    location /upload/ {{
      dav_methods PUT DELETE MKCOL COPY MOVE;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      autoindex on;
    }}
  }}
}}
"""
    _write(w / "conf/nginx.conf", conf)
    for d in ("logs", "run", "tmp", "html/upload", "dl"):
        (w / d).mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{NGINX_PORT}"
    curl = CURL
    steps: list[list[str]] = [
        ["bg", "nginx", "-p", f"{w}/", "-c", f"{w}/conf/nginx.conf", "-e", f"{w}/logs/error.log"],
        ["port", str(NGINX_PORT)],
    ]
    expect: dict[str, bytes] = {}
    if mix == 1:
        site = {"index.html": b"<h1>v1</h1>\n", "static/app.css": b"body{}\n"}
        uploads = {"report-2026.txt": _rand(3000, 1), "2026/jan/photo1.jpg": _rand(300_000, 2)}
        names = {"index.html", "static", "app.css", "report-2026.txt", "2026", "jan",
                 "photo1.jpg", "old", "report-copy.txt"}
        _serve_and_upload(w, site, uploads, steps, expect)
        # The same WebDAV methods as run 2 on other names: run 2 varies the input, not the
        # features (a feature never used while modeling is not in the profile; the
        # report is where a reviewer sees that).
        steps += [
            ["run", *curl, "-X", "MKCOL", f"{url}/upload/old/"],
            ["run", *curl, "-X", "MOVE", "-H", f"Destination: {url}/upload/old/photo1.jpg",
             f"{url}/upload/2026/jan/photo1.jpg"],
            ["run", *curl, "-X", "COPY", "-H", f"Destination: {url}/upload/report-copy.txt",
             f"{url}/upload/report-2026.txt"],
            ["out", f"{w}/dl/moved", *curl, f"{url}/upload/old/photo1.jpg"],
            ["out", f"{w}/dl/head", *curl, "-I", f"{url}/static/app.css"],
            ["out", f"{w}/dl/index", *curl, f"{url}/"],
            ["out", f"{w}/dl/css", *curl, f"{url}/static/app.css"],
            ["out", f"{w}/dl/listing", *curl, f"{url}/upload/"],
            ["run", *curl, "-X", "DELETE", f"{url}/upload/report-2026.txt"],
            ["out", f"{w}/dl/404", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
             f"{url}/nope.html"],
        ]
        expect["dl/index"] = site["index.html"]
        expect["dl/moved"] = uploads["2026/jan/photo1.jpg"]
    else:
        site = {"index.html": b"<h1>v2, other size</h1>\n" * 40, "js/site.js": b"let a=1;\n"}
        uploads = {"2027/q1/data.csv": _rand(50_000, 3), "video.bin": _rand(1_500_000, 4),
                   "notes.txt": _rand(700, 5)}
        names = {"js", "site.js", "2027", "q1", "data.csv", "video.bin", "notes.txt",
                 "albums", "copy.txt"}
        _serve_and_upload(w, site, uploads, steps, expect)
        steps += [
            ["run", *curl, "-X", "MKCOL", f"{url}/upload/albums/"],
            ["run", *curl, "-X", "MOVE", "-H", f"Destination: {url}/upload/albums/video.bin",
             f"{url}/upload/video.bin"],
            ["run", *curl, "-X", "COPY", "-H", f"Destination: {url}/upload/copy.txt",
             f"{url}/upload/notes.txt"],
            ["out", f"{w}/dl/moved", *curl, f"{url}/upload/albums/video.bin"],
            ["out", f"{w}/dl/head", *curl, "-I", f"{url}/"],
            ["out", f"{w}/dl/js", *curl, f"{url}/js/site.js"],
            ["out", f"{w}/dl/listing", *curl, f"{url}/upload/albums/"],
            ["run", *curl, "-X", "DELETE", f"{url}/upload/2027/q1/data.csv"],
            ["out", f"{w}/dl/404", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
             f"{url}/missing/x.png"],
        ]
        expect["dl/moved"] = uploads["video.bin"]
    steps.append(["stop", "15"])
    files = _expect_files(expect)

    def check(wd: Path) -> list[str]:
        bad = files(wd)
        code = (wd / "dl/404").read_text() if (wd / "dl/404").exists() else ""
        return bad + ([] if code == "404" else [f"404 check got {code!r}"])
    return Mix(steps, names, check)


def prepare_redis(w: Path, mix: int) -> Mix:
    _write(w / "redis.conf", f"bind 127.0.0.1\nport {REDIS_PORT}\ndaemonize no\n"
           f"dir {w}/data\ndbfilename dump.rdb\nsave \"\"\nappendonly no\n"
           f"logfile {w}/log/redis.log\nprotected-mode yes\n")
    (w / "data").mkdir(parents=True, exist_ok=True)
    (w / "log").mkdir(parents=True, exist_ok=True)
    if mix == 1:
        cmds = [f"SET user:{i} name{i}" for i in range(200)] + ["INCR hits", "APPEND log a",
                                                                 "SAVE", "BGSAVE"]
    else:
        big = "x" * 100_000
        cmds = ([f"HSET order:{i} item pen qty {i}" for i in range(300)]
                + [f"RPUSH queue job{i}" for i in range(500)]
                + [f"SADD tags t{i}" for i in range(100)]
                + [f"SET blob {big}", "EXPIRE blob 3600", "BGSAVE"])
    _write(w / "cmds.txt", "\n".join(cmds) + "\n")
    _write(w / "cmds2.txt", "SAVE\nDBSIZE\n")
    cli = ["redis-cli", "-p", str(REDIS_PORT)]
    steps = [["bg", "redis-server", f"{w}/redis.conf"], ["port", str(REDIS_PORT)],
             ["in", f"{w}/cmds.txt", *cli], ["sleep", "700"],
             ["in", f"{w}/cmds2.txt", *cli], ["run", *cli, "SHUTDOWN", "SAVE"], ["wait"]]

    def check(wd: Path) -> list[str]:
        rdb = wd / "data/dump.rdb"
        return [] if rdb.is_file() and rdb.read_bytes()[:5] == b"REDIS" else ["no dump.rdb"]
    return Mix(steps, set(), check)


def prepare_git(w: Path, mix: int) -> Mix:
    repo = w / "repo"
    (w / "home").mkdir(parents=True, exist_ok=True)
    env = [["env", f"HOME={w}/home"], ["env", "GIT_AUTHOR_NAME=pq"],
           ["env", "GIT_AUTHOR_EMAIL=pq@example.org"], ["env", "GIT_COMMITTER_NAME=pq"],
           ["env", "GIT_COMMITTER_EMAIL=pq@example.org"]]
    if mix == 1:
        files = {"README.md": b"# one\n", "src/main.py": b"print(1)\n" * 50,
                 "docs/intro.txt": _rand(20_000, 6)}
        names = {"README.md", "src", "main.py", "docs", "intro.txt", "README.txt",
                 "feature-login", "v1"}
        steps = [*env, ["run", "git", "init", "-q", "-b", "main", str(repo)], ["cd", str(repo)],
                 ["run", "git", "add", "-A"], ["run", "git", "commit", "-q", "-m", "one"],
                 ["run", "git", "mv", "README.md", "README.txt"],
                 ["run", "git", "commit", "-q", "-m", "rename"],
                 ["run", "git", "branch", "feature-login"],
                 ["run", "git", "checkout", "-q", "feature-login"],
                 ["run", "git", "rm", "-q", "docs/intro.txt"],
                 ["run", "git", "commit", "-q", "-m", "rm"],
                 ["run", "git", "tag", "v1"], ["run", "git", "checkout", "-q", "main"],
                 ["out", f"{w}/log.txt", "git", "log", "--oneline", "--all"],
                 ["run", "git", "gc", "-q"]]
    else:
        files = {"lib/util.c": b"int f(void){return 1;}\n" * 30,
                 "include/util.h": b"int f(void);\n", "data/big.bin": _rand(500_000, 7),
                 "notes.md": b"notes\n"}
        # count.txt: the output file of run 2's extra step, named by the mix
        names = {"lib", "util.c", "include", "util.h", "data", "big.bin", "notes.md",
                 "notes.txt", "release-2", "v2.0", "count.txt"}
        steps = [*env, ["run", "git", "init", "-q", "-b", "main", str(repo)], ["cd", str(repo)],
                 ["run", "git", "add", "-A"], ["run", "git", "commit", "-q", "-m", "first"],
                 ["run", "git", "branch", "release-2"],
                 ["run", "git", "checkout", "-q", "release-2"],
                 ["run", "git", "mv", "notes.md", "notes.txt"],
                 ["run", "git", "rm", "-q", "data/big.bin"],
                 ["run", "git", "commit", "-q", "-m", "second"],
                 ["run", "git", "tag", "-a", "v2.0", "-m", "release"],
                 ["run", "git", "checkout", "-q", "main"],
                 ["out", f"{w}/log.txt", "git", "log", "--oneline", "--all", "--stat"],
                 ["run", "git", "gc", "-q", "--aggressive"],
                 ["out", f"{w}/count.txt", "git", "count-objects", "-v"]]
    for rel, data in files.items():
        _write(repo / rel, data)

    def check(wd: Path) -> list[str]:
        log = (wd / "log.txt").read_text() if (wd / "log.txt").exists() else ""
        return [] if log.count("\n") >= 2 else ["git log too short"]
    return Mix(steps, names, check)


def prepare_gcc(w: Path, mix: int) -> Mix:
    (w / "build").mkdir(parents=True, exist_ok=True)
    if mix == 1:
        _write(w / "src/util.h", "int twice(int x);\n")
        _write(w / "src/util.c", '#include "util.h"\nint twice(int x) { return 2 * x; }\n')
        _write(w / "src/main.c", '#include <stdio.h>\n#include "util.h"\n'
               'int main(void) { printf("%d\\n", twice(21)); return 0; }\n')
        names = {"util.h", "util.c", "main.c", "util.o", "main.o"}
        steps = [["cd", str(w)],
                 ["run", "gcc", "-O2", "-Wall", "-c", "src/util.c", "-o", "build/util.o"],
                 ["run", "gcc", "-O2", "-Wall", "-c", "src/main.c", "-o", "build/main.o"],
                 ["run", "gcc", "build/main.o", "build/util.o", "-o", "build/app"],
                 ["out", f"{w}/out.txt", f"{w}/build/app"]]
        want = "42\n"
    else:
        _write(w / "include/mathx.h", "double hyp(double a, double b);\n")
        _write(w / "include/config.h", "#define SIDE_A 3.0\n#define SIDE_B 4.0\n")
        _write(w / "src/mathx.c", '#include <math.h>\n#include "mathx.h"\n'
               "double hyp(double a, double b) { return sqrt(a * a + b * b); }\n")
        _write(w / "src/app.c", '#include <stdio.h>\n#include <string.h>\n#include "config.h"\n'
               '#include "mathx.h"\nint main(void) { printf("%.0f\\n", hyp(SIDE_A, SIDE_B));'
               " return 0; }\n")
        names = {"mathx.h", "config.h", "mathx.c", "app.c", "include", "app.i", "mathx.s"}
        steps = [["cd", str(w)],
                 ["run", "gcc", "-g", "-O0", "-Iinclude", "src/app.c", "src/mathx.c", "-lm",
                  "-o", "build/app"],
                 ["run", "gcc", "-E", "-Iinclude", "src/app.c", "-o", "build/app.i"],
                 ["run", "gcc", "-S", "-O1", "-Iinclude", "src/mathx.c", "-o", "build/mathx.s"],
                 ["out", f"{w}/out.txt", f"{w}/build/app"]]
        want = "5\n"

    def check(wd: Path) -> list[str]:
        got = (wd / "out.txt").read_text() if (wd / "out.txt").exists() else ""
        return [] if got == want else [f"program printed {got!r}"]
    return Mix(steps, names, check)


def prepare_tar(w: Path, mix: int) -> Mix:
    data = w / "data"
    (w / "backup").mkdir(parents=True, exist_ok=True)
    (w / "restore").mkdir(parents=True, exist_ok=True)
    if mix == 1:
        tree = {"photos/a.jpg": _rand(80_000, 8), "photos/b.jpg": _rand(5_000, 9),
                "docs/letter.txt": b"dear\n" * 100, "etc/app.conf": b"k=v\n"}
        links = {"docs/latest": "letter.txt"}
        names = {"photos", "a.jpg", "b.jpg", "docs", "letter.txt", "etc", "app.conf", "latest",
                 "archive.tar.gz", "conf.tar.xz"}
        steps = [["run", "tar", "-czf", f"{w}/backup/archive.tar.gz", "-C", str(w), "data"],
                 ["run", "tar", "-cJf", f"{w}/backup/conf.tar.xz", "-C", str(w), "data/etc"],
                 ["out", f"{w}/list.txt", "tar", "-tzf", f"{w}/backup/archive.tar.gz"],
                 ["run", "tar", "-xzf", f"{w}/backup/archive.tar.gz", "-C", f"{w}/restore"],
                 ["run", "tar", "-xJf", f"{w}/backup/conf.tar.xz", "-C", f"{w}/restore"]]
    else:
        tree = {"music/2025/live/track01.flac": _rand(2_000_000, 10),
                "music/2025/live/track02.flac": _rand(300_000, 11),
                "music/readme.md": b"songs\n", "cache/x.tmp": b"tmp\n",
                "projects/alpha/src/main.rs": b"fn main(){}\n" * 20}
        links = {"music/current": "2025/live"}
        names = {"music", "2025", "live", "track01.flac", "track02.flac", "readme.md", "cache",
                 "x.tmp", "projects", "alpha", "src", "main.rs", "current", "hard.flac",
                 "archive.tar.xz", "delta.tar.gz"}
        steps = [["run", "tar", "-cJf", f"{w}/backup/archive.tar.xz", "-C", str(w), "data"],
                 ["run", "tar", "-czf", f"{w}/backup/delta.tar.gz", "--exclude=*.tmp",
                  "-C", str(w), "data/music"],
                 ["out", f"{w}/list.txt", "tar", "-tvJf", f"{w}/backup/archive.tar.xz"],
                 ["run", "tar", "-xJf", f"{w}/backup/archive.tar.xz", "-C", f"{w}/restore"],
                 ["run", "tar", "-xzf", f"{w}/backup/delta.tar.gz", "-C", f"{w}/restore",
                  "--overwrite"]]
    for rel, blob in tree.items():
        _write(data / rel, blob)
    for rel, target in links.items():
        (data / rel).symlink_to(target)
    if mix == 2:
        os.link(data / "music/2025/live/track02.flac", data / "music/hard.flac")
        (data / "empty").mkdir()
        names.add("empty")

    def check(wd: Path) -> list[str]:
        restored = wd / "restore/data"
        return [f"{rel} not restored" for rel, blob in tree.items()
                if not (restored / rel).is_file() or (restored / rel).read_bytes() != blob]
    return Mix(steps, names, check)


def prepare_sqlite(w: Path, mix: int) -> Mix:
    (w / "db").mkdir(parents=True, exist_ok=True)
    if mix == 1:
        sql = ("PRAGMA journal_mode=WAL;\nCREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\n"
               "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<500)\n"
               "INSERT INTO users(name) SELECT 'user'||x FROM c;\n"
               "SELECT count(*) FROM users;\nPRAGMA wal_checkpoint(TRUNCATE);\n")
        script, names, want = "setup-v1.sql", {"setup-v1.sql"}, "500"
    else:
        sql = ("PRAGMA journal_mode=WAL;\nCREATE TABLE orders(id INTEGER PRIMARY KEY, "
               "who TEXT, blob BLOB);\nCREATE INDEX o_who ON orders(who);\nBEGIN;\n"
               "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<2000)\n"
               "INSERT INTO orders(who, blob) SELECT 'c'||(x%37), randomblob(x%900) FROM c;\n"
               "COMMIT;\nUPDATE orders SET who='vip' WHERE id%10=0;\n"
               "DELETE FROM orders WHERE id%7=0;\nVACUUM;\nPRAGMA integrity_check;\n"
               f".backup {w}/db/nightly-copy.db\nSELECT count(*) FROM orders;\n")
        script, names, want = "migrate-v2.sql", {"migrate-v2.sql", "nightly-copy.db"}, "1715"
    _write(w / "sql" / script, sql)
    steps = [["cd", str(w)],
             ["out", f"{w}/out.txt", "sqlite3", "-batch", "-bail", f"{w}/db/app.db",
              f".read {w}/sql/{script}"]]

    def check(wd: Path) -> list[str]:
        got = (wd / "out.txt").read_text().split() if (wd / "out.txt").exists() else []
        return [] if want in got else [f"sqlite3 printed {got[-3:]}"]
    return Mix(steps, names, check)


def prepare_textproc(w: Path, mix: int) -> Mix:
    """Held out: added after the classifier changes of 2026-12-05 and not tuned on.
    GNU sed's in-place edits (a temporary file beside the edited one, renamed over it),
    sort spilling to temporary files (``-S`` small, ``-T``), split's generated parts."""
    (w / "tmp").mkdir(parents=True, exist_ok=True)
    (w / "out").mkdir(parents=True, exist_ok=True)
    rng = random.Random(mix)
    if mix == 1:
        notes = {"a.txt": "foo one\nfoo two\n" * 50, "b.txt": "x marks\n" * 80}
        data, rows = "nums.txt", [str(rng.randrange(10**9)) for _ in range(60_000)]
        names = {"a.txt", "b.txt", "nums.txt", "sorted.txt", "a.txt.orig"}
        steps = [["run", "sed", "-i", "s/foo/bar/", f"{w}/notes/a.txt"],
                 ["run", "sed", "-i.orig", "s/x/y/", f"{w}/notes/a.txt"],
                 ["run", "sed", "-i", "s/x/z/", f"{w}/notes/b.txt"],
                 ["run", "sort", "-n", "-S", "64K", "-T", f"{w}/tmp", "-o",
                  f"{w}/out/sorted.txt", f"{w}/data/{data}"],
                 ["run", "split", "-l", "20000", f"{w}/out/sorted.txt", f"{w}/out/part-"]]
        want = ("sorted.txt", 60_000)
    else:
        notes = {"c.md": "# title\nfoo\n" * 40, "d.md": "para x\n" * 30,
                 "e.md": "end\n" * 10}
        data, rows = "values.csv", [f"{rng.randrange(10**6)},{rng.random():.6f}"
                                    for _ in range(90_000)]
        names = {"c.md", "d.md", "e.md", "values.csv", "ranked.txt", "c.md.bak"}
        steps = [["run", "sed", "-i.bak", "s/foo/bar/", f"{w}/notes/c.md"],
                 ["run", "sed", "-i", "s/x/y/", f"{w}/notes/d.md"],
                 ["run", "sed", "-i", "-e", "s/end/fin/", f"{w}/notes/e.md"],
                 ["run", "sort", "-t", ",", "-k2", "-r", "-S", "32K", "-T", f"{w}/tmp",
                  "-o", f"{w}/out/ranked.txt", f"{w}/data/{data}"],
                 ["run", "split", "-l", "15000", f"{w}/out/ranked.txt", f"{w}/out/part-"]]
        want = ("ranked.txt", 90_000)
    for name, text in notes.items():
        _write(w / "notes" / name, text)
    _write(w / "data" / data, "\n".join(rows) + "\n")

    def check(wd: Path) -> list[str]:
        out = wd / "out" / want[0]
        lines = out.read_text().count("\n") if out.exists() else 0
        parts = sorted((wd / "out").glob("part-*"))
        problems = [] if lines == want[1] else [f"{want[0]} has {lines} lines"]
        if sum(p.read_text().count("\n") for p in parts) != want[1]:
            problems.append("split parts do not add up")
        return problems
    return Mix(steps, names, check)


def prepare_rsync(w: Path, mix: int) -> Mix:
    """Held out: added after the written-content and walked-tree rules of 2026-12-06 and
    measured once, not tuned on. rsync mirrors a tree (a walk of the source, temporary
    ``.NAME.XXXXXX`` files renamed into place), then syncs a changed tree over it with
    ``--delete`` and ``--backup-dir``, then lists the mirror."""
    if mix == 1:
        first = {"a/x.txt": b"x\n" * 300, "a/y.bin": _rand(40_000, 12),
                 "b/c/z.md": b"# z\n", "top.txt": b"top\n"}
        second = {"a/x.txt": b"x2\n" * 310, "b/c/z.md": b"# z\n", "top.txt": b"top\n",
                  "b/new.txt": b"new\n"}
    else:
        first = {"site/img/logo.png": _rand(120_000, 13), "site/index.html": b"<p>i</p>\n",
                 "site/css/main.css": b"p{}\n" * 40, "notes/todo.org": b"* todo\n",
                 "notes/2026/week49.org": b"* w49\n" * 20}
        # another size: rsync's quick check skips a file of the same size and mtime
        second = {"site/img/logo.png": _rand(125_000, 14), "site/index.html": b"<p>i</p>\n",
                  "site/css/print.css": b"@media print{}\n",
                  "notes/2026/week49.org": b"* w49\n" * 21, "changelog.txt": b"v2\n"}
    names = {part for rel in (*first, *second) for part in rel.split("/")}
    a, b = "current", "next"  # the job's fixed source directories; their trees differ
    for rel, blob in first.items():
        _write(w / a / rel, blob)
    for rel, blob in second.items():
        _write(w / b / rel, blob)
    (w / "mirror").mkdir(parents=True, exist_ok=True)
    (w / "old").mkdir(parents=True, exist_ok=True)
    steps = [["run", "rsync", "-a", f"{w}/{a}/", f"{w}/mirror/"],
             ["run", "rsync", "-a", "--delete", "--backup", f"--backup-dir={w}/old",
              f"{w}/{b}/", f"{w}/mirror/"],
             ["out", f"{w}/list.txt", "rsync", "-r", "--list-only", f"{w}/mirror/"]]

    def check(wd: Path) -> list[str]:
        bad = [f"{rel} not mirrored" for rel, blob in second.items()
               if not (wd / "mirror" / rel).is_file()
               or (wd / "mirror" / rel).read_bytes() != blob]
        gone = [rel for rel in first if rel not in second and (wd / "mirror" / rel).exists()]
        return bad + [f"{rel} not deleted" for rel in gone]
    return Mix(steps, names, check)


def prepare_logrotate(w: Path, mix: int) -> Mix:
    """Held out: added 2026-12-06 and measured once, not tuned on. logrotate with the
    same configuration in both mixes (rotate 4, compress, delaycompress, create) forced
    over a logs directory: run 1 rotates two logs three times, run 2 three logs (one of
    them new) five times, so its numbered and compressed names go past run 1's."""
    logs = w / "logs"
    if mix == 1:
        files = {"app.log": b"started\n" * 50, "access.log": b"GET /\n" * 200}
        rounds = 3
    else:
        files = {"app.log": b"started again\n" * 70, "access.log": b"GET /x\n" * 90,
                 "worker.log": b"job done\n" * 30}
        rounds = 5
    for rel, blob in files.items():
        _write(logs / rel, blob)
    os.chmod(logs, 0o755)
    _write(w / "logrotate.conf",
           f"{logs}/*.log {{\n    rotate 4\n    compress\n    delaycompress\n"
           "    missingok\n    create 0640 root root\n}\n")
    names = set(files) | {"logrotate.conf", "state"}
    steps = [["run", "logrotate", "-f", "-s", f"{w}/state", f"{w}/logrotate.conf"]
             for _ in range(rounds)]
    kept = min(rounds, 4)

    def check(wd: Path) -> list[str]:
        bad = []
        for log in files:
            want = [f"{log}.1"] + [f"{log}.{n}.gz" for n in range(2, kept + 1)]
            bad += [f"{name} missing" for name in want if not (wd / "logs" / name).exists()]
            if (wd / "logs" / f"{log}.{kept + 1}.gz").exists():
                bad.append(f"{log}.{kept + 1}.gz kept past rotate 4")
        return bad
    return Mix(steps, names, check)


PROGRAMS = [
    Program("nginx", {"nginx": "nginx", "curl": "curl"}, prepare_nginx),
    Program("redis", {"redis-server": "redis-server", "redis-cli": "redis-tools"}, prepare_redis),
    Program("git", {"git": "git"}, prepare_git),
    Program("gcc", {"gcc": "gcc", "as": "binutils"}, prepare_gcc),
    Program("tar", {"tar": "tar", "gzip": "gzip", "xz": "xz-utils"}, prepare_tar),
    Program("sqlite3", {"sqlite3": "sqlite3"}, prepare_sqlite),
    Program("textproc", {"sed": "sed", "sort": "coreutils", "split": "coreutils"},
            prepare_textproc),
    Program("rsync", {"rsync": "rsync"}, prepare_rsync),
    Program("logrotate", {"logrotate": "logrotate", "gzip": "gzip"}, prepare_logrotate),
]


def ensure_packages(programs: Sequence[Program]) -> None:
    need = sorted({pkg for p in programs for exe, pkg in p.packages.items()
                   if shutil.which(exe, path="/usr/sbin:/usr/bin:/sbin:/bin") is None}
                  | ({"strace"} if shutil.which("strace") is None else set()))
    if not need:
        return
    print(f"installing from Debian: {' '.join(need)} "
          "(apt-get install -y --no-install-recommends)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *need], env=env,
                   check=True, stdout=subprocess.DEVNULL)


# --- helpers ---------------------------------------------------------------------------------


def build(source: str, out: Path, static: bool) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-O2", "-Wall", *(["-static"] if static else []), "-o", str(out),
           str(HERE / source)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def fresh_workload(prog: Program, mix: int) -> tuple[Path, Mix]:
    w = BASE / prog.name
    shutil.rmtree(w, ignore_errors=True)
    w.mkdir(parents=True)
    m = prog.prepare(w, mix)
    _write(w / "job.steps", "".join("\t".join(s) + "\n" for s in m.steps))
    return w, m


def run_logged(cmd: list[str], log: Path, timeout: float = 300, cwd: Path | None = None,
               ) -> int:
    """Run ``cmd`` in a session of its own; on timeout kill the whole session."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def in_box(cmd: list[str]) -> list[str]:
    """New mount and pid namespaces with their own /proc, like ``armorflow trace``'s."""
    return ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "--", *cmd]


def wrapped(profile: Path, cmd: list[str]) -> list[str]:
    return [PY, str(Path(__file__).resolve()), "--seccomp-exec", str(profile), "--", *cmd]


# --- one program -------------------------------------------------------------------------------


@dataclass
class Row:
    program: str
    run1_ok: bool = False
    run1_events: int = 0
    apparmor_rules: int = 0
    seccomp_syscalls: int = 0
    run2_seccomp_ok: bool = False
    run2_seccomp_detail: str = ""
    ops_all: int = 0
    covered_all: int = 0
    ops_known: int = 0
    covered_known: int = 0
    probes_denied: int = 0
    probes_total: int = 0
    probe_notes: list[str] = field(default_factory=list)
    uncovered: list[dict[str, Any]] = field(default_factory=list)
    causes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def pct(self, a: int, b: int) -> float:
        return 100.0 * a / b if b else 100.0


def is_new_name(component: str, new_names: set[str]) -> bool:
    """A path component that is a declared new name, or one the program derives from it
    by a suffix after a separator (``copy.db`` -> ``copy.db-journal``, ``x.lock``)."""
    return any(component == n or (component.startswith(n) and component[len(n)] in ".-_~")
               for n in new_names if n)


def owner_of(path: str) -> bool:
    try:
        return os.lstat(path.rstrip("/") or "/").st_uid == 0
    except OSError:
        return True  # gone: the (root) workload created it


def cause_of(op: Op, run1_paths: dict[str, set[str]], new_content: bool) -> str:
    """Why a run-2 operation has no rule (a first guess, for the report)."""
    if new_content:
        return "new content name"
    if op.path in run1_paths:
        return "seen in run 1 with other permissions"
    alt = op.path[:-1] if op.path.endswith("/") else op.path + "/"
    if alt in run1_paths:
        return "seen in run 1 as file/directory (slash)"
    parent = op.path.rstrip("/").rsplit("/", 1)[0] + "/"
    if any(p.startswith(parent) and p.count("/") == op.path.rstrip("/").count("/")
           + (1 if p.endswith("/") else 0) for p in run1_paths):
        return "new name in a directory run 1 used (not generalised)"
    return "path never seen in run 1"


def probe_seccomp(prog: Row, seccomp: Path, run1: list[dict[str, Any]], probe: Path,
                  work: Path) -> None:
    used: set[tuple[str, int]] = {(e["name"], int(e.get("flags") or 0)) for e in run1
                                  if e.get("kind") == "syscall"}
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    ns = CLONE_NEWUSER | CLONE_NEWNS
    probes = [("unshare", f"{CLONE_NEWUSER:x}", ("unshare", CLONE_NEWUSER)),
              ("unshare", f"{CLONE_NEWNS:x}", ("unshare", CLONE_NEWNS)),
              ("clone", f"{ns:x}", ("clone", ns)),
              ("clone3", f"{ns:x}", ("clone3", ns)),
              ("mount", str(mnt), ("mount", 0))]
    for mode, arg, key in probes:
        label = f"seccomp {mode}({arg})"
        control = subprocess.run(["unshare", "--mount", "--", str(probe), mode, arg],
                                 capture_output=True, text=True, check=False).stdout.strip()
        got = subprocess.run(["unshare", "--mount", "--",
                              *wrapped(seccomp, [str(probe), mode, arg])],
                             capture_output=True, text=True, check=False).stdout.strip()
        if key in used or (mode == "mount" and any(n == "mount" for n, _ in used)):
            prog.probe_notes.append(f"{label}: used in run 1, allowed on purpose ({got})")
            continue
        prog.probes_total += 1
        if got in (f"{mode} errno={errno.EPERM}", f"{mode} errno={errno.ENOSYS}"):
            prog.probes_denied += 1
        else:
            prog.probe_notes.append(f"{label}: NOT denied: {got!r} (without filter: {control!r})")
        if control != f"{mode} ok":
            prog.probe_notes.append(f"{label}: without the filter it gives {control!r}")


def probe_apparmor(prog: Row, rules: RuleSet, run1: list[dict[str, Any]]) -> None:
    execs = {e["path"] for e in run1 if e.get("kind") == "exec"}
    probes = [("/etc/shadow", "r"), ("/root/.ssh/id_rsa", "r"), ("/etc/passwd", "w"),
              ("/usr/bin/x", "w"), ("/root/.bashrc", "w"),
              ("/var/tmp/armorflow-outside/x", "w"), ("/opt/armorflow-outside/x", "w")]
    for exe in ("/bin/sh", "/bin/bash", "/usr/bin/python3"):
        real = os.path.realpath(exe)
        if real in execs or exe in execs:
            prog.probe_notes.append(f"apparmor exec {exe}: run 1 ran it, not a probe")
        else:
            probes.append((real, "x"))
    for path, perms in probes:
        prog.probes_total += 1
        check = rules.check(path, perms, owner=True)
        if check.allowed:
            prog.probe_notes.append(f"apparmor {perms} {path}: ALLOWED by {check.granted_by}")
        else:
            prog.probes_denied += 1


def run_program(prog: Program, art: Path, runner: Path, probe: Path, verbose: bool) -> Row:
    t0 = time.monotonic()
    row = Row(prog.name)
    art.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        if verbose:
            print(f"[{prog.name}] {message}", file=sys.stderr)

    # Run 1, traced.
    w, mix1 = fresh_workload(prog, 1)
    r1 = art / "r1.jsonl"
    rc = run_logged([ARMORFLOW, "trace", "--profile", f"pq-{prog.name}", "--out", str(r1), "--",
                     str(runner), str(w / "job.steps")], art / "trace.log", cwd=w)
    bad = mix1.check(w)
    row.run1_ok = rc == 0 and not bad
    say(f"run 1 rc={rc} checks={bad}")
    events = [json.loads(line) for line in r1.read_text().splitlines() if line.strip()]
    row.run1_events = len(events)
    shutil.rmtree(art / "run1-workload", ignore_errors=True)
    shutil.copytree(w, art / "run1-workload", symlinks=True)
    models = art / "models"
    subprocess.run([ARMORFLOW, "model", "--from", str(r1), "--out", str(models)],
                   check=True, capture_output=True)
    aa = models / "varmor" / f"pq-{prog.name}.apparmor"
    sc = models / "varmor" / f"pq-{prog.name}.seccomp.json"
    text = aa.read_text()
    file_section = text.split("# ---- EXEC ----")[1].split("# ---- CAPABILITY ----")[0]
    row.apparmor_rules = sum(1 for ln in file_section.splitlines()
                             if ln.strip().endswith(",") and not ln.strip().startswith("#"))
    profile = json.loads(sc.read_text())
    row.seccomp_syscalls = len({n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
                                for n in r["names"]})
    rules = RuleSet.from_file(aa)
    # Run 2 under Seccomp.
    w, mix2 = fresh_workload(prog, 2)
    rc = run_logged(in_box(wrapped(sc, [str(runner), str(w / "job.steps")])),
                    art / "run2-seccomp.log", cwd=w)
    bad = mix2.check(w)
    row.run2_seccomp_ok = rc == 0 and not bad
    if not row.run2_seccomp_ok:
        row.run2_seccomp_detail = f"exit {rc}, checks {bad}; " + diagnose_seccomp(prog, sc, runner,
                                                                                  art)
    say(f"run 2 under seccomp rc={rc} checks={bad}")
    # Run 2 under strace, for AppArmor coverage.
    w, mix2 = fresh_workload(prog, 2)
    log = art / "run2.strace"
    rc = run_logged(in_box(["strace", "-f", "-qq", "-y", "-s", "4096", "-o", str(log), "-e",
                            STRACE_EXPR, str(runner), str(w / "job.steps")]),
                    art / "run2-strace.log", cwd=w)
    say(f"run 2 under strace rc={rc} checks={mix2.check(w)}")
    reader = StraceOps(str(w))
    reader.read(log.read_text(errors="surrogateescape").splitlines())
    new_names = mix2.names - mix1.names
    run1_paths: dict[str, set[str]] = {}
    for e in events:
        if e.get("kind") in ("file", "exec"):
            run1_paths.setdefault(e["path"], set()).add(e.get("perms", "x"))
    seen: set[tuple[str, str, str | None]] = set()
    for op in reader.ops:
        key = (op.path, op.perms, op.target)
        if key in seen:
            continue
        seen.add(key)
        inside = op.path.startswith(str(w) + "/")
        rel = op.path[len(str(w)) + 1:] if inside else ""
        new_content = inside and any(is_new_name(part, new_names) for part in rel.split("/"))
        check = rules.check(op.path, op.perms, owner=owner_of(op.path), target=op.target)
        row.ops_all += 1
        row.covered_all += check.allowed
        if not new_content:
            row.ops_known += 1
            row.covered_known += check.allowed
        if not check.allowed:
            cause = cause_of(op, run1_paths, new_content)
            row.causes[cause] = row.causes.get(cause, 0) + 1
            row.uncovered.append({"path": op.path, "perms": op.perms, "missing": check.missing,
                                  "syscall": op.syscall, "target": op.target,
                                  "new_content": new_content, "cause": cause})
    # Probes.
    probe_apparmor(row, rules, events)
    probe_seccomp(row, sc, events, probe, art)
    row.seconds = time.monotonic() - t0
    return row


def diagnose_seccomp(prog: Program, sc: Path, runner: Path, art: Path) -> str:
    """Which syscalls the filter refused: run 2 again under it with strace outside."""
    w, _ = fresh_workload(prog, 2)
    log = art / "run2-seccomp.strace"
    with contextlib.suppress(subprocess.TimeoutExpired):  # the log so far still tells
        run_logged(in_box(["strace", "-f", "-qq", "-o", str(log),
                           *wrapped(sc, [str(runner), str(w / "job.steps")])]),
                   art / "run2-seccomp-strace.log", cwd=w, timeout=120)
    allowed = {n for r in json.loads(sc.read_text())["syscalls"] for n in r["names"]
               if r["action"] == "SCMP_ACT_ALLOW"}
    refused: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"^\d+\s+(?:<\.\.\. )?(\w+)", line)
        if m and ("= -1 EPERM" in line or "= -1 ENOSYS" in line):
            name = m.group(1)
            if name not in allowed or name in ("clone", "clone3", "unshare"):
                refused[name] = refused.get(name, 0) + 1
    return "refused: " + (", ".join(f"{k} x{v}" for k, v in sorted(refused.items())) or "none")


# --- output ------------------------------------------------------------------------------------


def table(rows: Sequence[Row], verbose: bool) -> str:
    head = (f"{'program':<9} {'run1 ev':>7} {'AA rules':>8} {'sc calls':>8} {'run2 sc':>7} "
            f"{'cov all':>8} {'cov -new':>8} {'probes':>7}")
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(f"{r.program:<9} {r.run1_events:>7} {r.apparmor_rules:>8} "
                   f"{r.seccomp_syscalls:>8} {'OK' if r.run2_seccomp_ok else 'FAIL':>7} "
                   f"{r.pct(r.covered_all, r.ops_all):>7.1f}% "
                   f"{r.pct(r.covered_known, r.ops_known):>7.1f}% "
                   f"{r.probes_denied:>3}/{r.probes_total:<3}")
        if verbose:
            out.append(f"    ops {r.covered_all}/{r.ops_all} all, {r.covered_known}/{r.ops_known}"
                       f" without new content; {r.seconds:.0f}s; causes {r.causes}")
            if r.run2_seccomp_detail:
                out.append(f"    seccomp: {r.run2_seccomp_detail}")
            for note in r.probe_notes:
                out.append(f"    probe: {note}")
            # the ones that count against the "without new content" column first
            for u in sorted(r.uncovered, key=lambda u: bool(u["new_content"]))[:10]:
                tgt = f" -> {u['target']}" if u["target"] else ""
                out.append(f"    uncovered {u['perms']:<3} {u['path']}{tgt} ({u['syscall']}; "
                           f"{u['cause']})")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--seccomp-exec"]:
        seccomp_exec(args_in[1], args_in[3:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("-o", "--output", choices=("table", "json"), default="table")
    ap.add_argument("--only", default="", help="comma-separated program names")
    ap.add_argument("--keep", type=Path, help="keep recordings, profiles and logs here")
    args = ap.parse_args(args_in)
    if os.geteuid() != 0:
        print("profile_quality: needs root (eBPF tracer, namespaces)", file=sys.stderr)
        return 2
    chosen = [p for p in PROGRAMS if not args.only or p.name in args.only.split(",")]
    ensure_packages(chosen)
    art_root = args.keep or Path(tempfile.mkdtemp(prefix="armorflow-pq-"))
    BIN.mkdir(parents=True, exist_ok=True)
    runner = build("pq_runner.c", BIN / "pq_runner", static=False)
    probe = build("pq_nsprobe.c", art_root / "pq_nsprobe", static=True)
    rows = []
    for prog in chosen:
        try:
            rows.append(run_program(prog, art_root / prog.name, runner, probe, args.verbose))
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"[{prog.name}] failed: {exc}", file=sys.stderr)
            rows.append(Row(prog.name))
    if args.output == "json":
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        print(table(rows, args.verbose))
    if args.keep is None:
        shutil.rmtree(art_root, ignore_errors=True)
        shutil.rmtree(BASE, ignore_errors=True)
    met = all(r.run2_seccomp_ok and r.pct(r.covered_known, r.ops_known) >= 99
              and r.pct(r.covered_all, r.ops_all) >= 95 and r.probes_denied == r.probes_total
              for r in rows)
    print(f"acceptance targets met: {'yes' if met else 'no'}", file=sys.stderr)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
