"""Realistic workloads for ``bench/agent_overhead.py``: real programs doing real work.

Each runs as a local container (the traced side, as a pod's container would be), driven
from outside when it is a server, and reports its CPU time (user + system of the
container's processes, from wait4) per unit of work:

* ``compile``: gcc builds python-zstandard's C sources (17 extension files against the
  Python headers, and the zstd library amalgamation), one ``gcc -c`` per file as make
  does: many execs, header opens and mmaps, then long compute;
* ``nginx``: nginx serves a static tree to ``wrk`` (16 connections) on loopback; CPU per
  request of the server's master and worker;
* ``redis``: redis-server under its own benchmark (``redis-benchmark``, SET/GET/LPUSH/
  LPOP/INCR, 50 clients); CPU per request.

The programs come from Debian (nginx, redis-server, wrk: installed by
:func:`ensure_programs` when missing) and PyPI (the zstandard source release, fetched
once into the work directory).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from armorflow.agents.localrun import LocalContainer

ZSTANDARD = "zstandard==0.23.0"
DEBIAN = {"nginx": "nginx", "redis-server": "redis-server", "redis-benchmark": "redis-tools",
          "wrk": "wrk"}


def ensure_programs() -> None:
    missing = sorted({pkg for binary, pkg in DEBIAN.items() if shutil.which(binary) is None})
    if missing:
        print(f"installing from Debian: {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, box: LocalContainer, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if box.poll() is not None:
            raise SystemExit(f"{box.argv[0]} exited with {box.poll()} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{box.argv[0]} did not listen on {port} within {timeout_s}s")


@dataclass
class Workload:
    """One realistic workload: how to start it in a container and drive it."""

    name: str
    #: what one unit of work is (per-unit CPU is what the ratios compare)
    unit: str
    argv: Callable[[], list[str]]
    #: Runs outside the container while it runs; returns the units done (None: the
    #: container's own command is the whole work, and ends by itself).
    drive: Callable[[LocalContainer], int] | None = None
    #: a fixed number of units for self-ending workloads
    units: int = 1


def compile_workload(workdir: Path) -> Workload:
    src = workdir / "zstandard"
    if not src.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
                        "--no-deps", "-d", str(workdir), ZSTANDARD], check=True)
        archive = next(workdir.glob("zstandard-*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(workdir, filter="data")
        next(p for p in workdir.iterdir() if p.is_dir() and p.name.startswith("zstandard-")
             ).rename(src)
    include = sysconfig.get_paths()["include"]
    files = sorted(str(p.relative_to(src)) for p in (src / "c-ext").glob("*.c"))
    files.append("zstd/zstd.c")
    out = workdir / "objects"
    out.mkdir(exist_ok=True)
    script = " && ".join(
        f"gcc -O1 -fPIC -c {f} -I{include} -Ic-ext -Izstd -DZSTD_MULTITHREAD "
        f"-o {out}/{Path(f).stem}.o" for f in files)

    return Workload("compile", "source file", lambda: ["sh", "-c", f"cd {src} && {script}"],
                    units=len(files))


def nginx_workload(workdir: Path, seconds: float) -> Workload:
    root = workdir / "nginx"
    html = root / "html"
    for sub in ("logs", "tmp", "html/img", "html/css"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(50):
        (html / f"page{i}.html").write_text(f"<html><body>{'page ' * (i * 20 + 10)}</body></html>")
        (html / "img" / f"pic{i}.bin").write_bytes(bytes(range(256)) * (i + 1))
    (html / "css" / "site.css").write_text("body { margin: 0 }\n" * 50)
    port = free_port()
    (root / "nginx.conf").write_text(f"""
user root;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {root}/logs/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    server {{ listen 127.0.0.1:{port}; root {html}; }}
}}
""")
    lua = workdir / "paths.lua"
    lua.write_text("local n = 0\nrequest = function()\n  n = n + 1\n"
                   "  local i = n % 50\n"
                   "  if n % 3 == 0 then return wrk.format(nil, '/img/pic' .. i .. '.bin') end\n"
                   "  return wrk.format(nil, '/page' .. i .. '.html')\nend\n")

    def drive(box: LocalContainer) -> int:
        wait_port(port, box)
        out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds:g}s", "-s", str(lua),
                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                             check=True).stdout
        box_signal(box, signal.SIGQUIT)  # graceful: the master waits for its worker
        return int(next(line for line in out.splitlines() if "requests in" in line).split()[0])

    return Workload("nginx", "request",
                    lambda: ["nginx", "-p", str(root), "-c", str(root / "nginx.conf"),
                             "-g", "daemon off;"], drive)


def redis_workload(workdir: Path, requests: int) -> Workload:
    port = free_port()
    data = workdir / "redis"
    data.mkdir(exist_ok=True)

    def drive(box: LocalContainer) -> int:
        wait_port(port, box)
        tests = "set,get,lpush,lpop,incr"
        subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", "50",
                        "-t", tests, "-q"], check=True, capture_output=True)
        box_signal(box, signal.SIGTERM)
        return requests * len(tests.split(","))

    return Workload("redis", "request",
                    lambda: ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(data), "--save", "", "--appendonly", "no",
                             "--daemonize", "no", "--loglevel", "warning",
                             "--logfile", str(data / "redis.log")], drive)


def box_signal(box: LocalContainer, sig: signal.Signals) -> None:
    import os

    os.kill(box.pid, sig)
