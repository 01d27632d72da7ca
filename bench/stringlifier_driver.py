"""Collapse paths as vArmor does with stringlifier: its classifier service, and its agent.

Runs inside the side venv made by ``scripts/stringlifier-venv.sh`` (torch + stringlifier),
never in the project venv. vArmor's agent posts each file path on its own to a small
Flask service (``cmd/classifier/app/api/path.py`` in bytedance/vArmor) and keeps what it
answers. The behaviour reproduced here, per path:

1. stringlifier tags the whole path in one call; random-looking runs come back replaced
   by ``<RANDOM_STRING>``, ``<NUMERIC>``, ``<IP_ADDR>``, ``<UUID>`` or ``<JWT>``.
2. The tagged and the original path are both split on ``/``; walking the tagged pieces
   by position, a piece holding any tag becomes ``*`` and any other piece is taken from
   the original at the same position; the pieces are joined back under ``/`` with
   ``os.path.join`` (so empty pieces add no doubled slash, and the result is absolute).
3. The result replaces the path only if it contains a ``*``; otherwise the path is kept.
4. Any error (e.g. the tagged path has more pieces than the original) makes the service
   answer 500; the agent retries, then keeps the original path.
5. The agent reads the answer with one read into a buffer as long as the request. An
   answer longer than the path is never read to its end, so every retry fails the same
   way and the agent ends up with an empty path, which drops that file event; the driver
   then writes an empty line (or ``""``).

The agent applies rules of its own before it asks the service (``trimPath`` in
``internal/behavior/preprocessor/apparmor.go``); :func:`agent_rule` reproduces them
for the second output, "agent": ``/snapshots/<n>/fs/`` becomes ``/snapshots/*/fs/``;
for a read, anything under ``/lib/x86_64-linux-gnu/``, ``/usr/lib/x86_64-linux-gnu/`` or
``/usr/lib/aarch64-linux-gnu/`` becomes that directory plus ``**``; anything under
``/tmp/`` becomes ``/tmp/**`` and anything under the service-account directories that
directory plus ``**``; under ``/proc`` the digits after ``/proc/`` (and after ``/task/``
next to them) become ``*``; paths under ``/lib/``, ``/usr/lib/``, ``/usr/local/lib/``,
``/sys/``, ``/proc/`` and ``/var/lib/`` are kept as they are; only the rest goes to the
service. Every path is taken as read (the evaluation set has no access masks), and the
overlay directories the agent reads from the node's ``/proc/mounts`` are not known here.

Input on stdin: one path per line, or with ``--json`` a JSON array of paths. Output in the
same order: one collapsed path per line (the service's; with ``--agent`` the agent's;
figures on stderr), or with ``--json`` one JSON object ``{"collapsed": [service...],
"agent": [...], "sent": N, "import_s": ..., "load_s": ..., "cpu_s": ..., "paths": N}``.
Times are this process's CPU time with torch on one thread; ``cpu_s`` is the service's
time over every path (the agent would send only ``sent`` of them).

    .venv-stringlifier/bin/python -I bench/stringlifier_driver.py < paths.txt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence

#: The placeholders stringlifier writes in place of what it finds random.
TAGS: tuple[str, ...] = ("<RANDOM_STRING>", "<NUMERIC>", "<IP_ADDR>", "<UUID>", "<JWT>")

Lifier = Callable[[str], Sequence[str]]

_SNAPSHOT = re.compile(r"/snapshots/\d+/fs/")
_PROC = re.compile(r"/proc/[0-9]+")
_PROC_TASK = re.compile(r"/proc/[0-9]+/task/[0-9]+")
#: Directories whose files, when only read, the agent folds into one ``dir/**`` rule.
_READ_ONLY_LIB_DIRS = ("/lib/x86_64-linux-gnu/", "/usr/lib/x86_64-linux-gnu/",
                       "/usr/lib/aarch64-linux-gnu/")
_SERVICE_ACCOUNT_DIRS = ("/run/secrets/kubernetes.io/serviceaccount/",
                         "/var/run/secrets/kubernetes.io/serviceaccount/")
#: Never sent to the service: kept as they are.
_NOT_SENT = ("/lib/", "/usr/lib/", "/usr/local/lib/", "/sys/", "/proc/", "/var/lib/")


def varmor_collapse(lifier: Lifier, path: str) -> str:
    """One path through vArmor's classifier service and its agent's reading of the answer."""
    try:
        tagged = lifier(path)[0]
        original = path.split("/")
        glob = "/"
        for position, piece in enumerate(tagged.split("/")):
            random_piece = any(tag in piece for tag in TAGS)
            glob = os.path.join(glob, "*" if random_piece else original[position])
    except Exception:  # the service's answer is then a 500: the agent keeps the path
        return path
    answer = glob if "*" in glob else path
    if len(answer.encode()) > len(path.encode()):
        return ""  # does not fit the agent's read buffer: the event is dropped
    return answer


def agent_rule(path: str) -> tuple[str | None, str]:
    """What the agent makes of a (read) path before the service: the final result, or
    None and the path it sends to the service."""
    if "/snapshots/" in path and "/fs/" in path:
        path = _SNAPSHOT.sub("/snapshots/*/fs/", path)
    for d in _READ_ONLY_LIB_DIRS:
        if path.startswith(d):
            return (path if path == d else d + "**"), path
    if path.startswith("/tmp/"):
        return (path if path == "/tmp/" else "/tmp/**"), path
    for d in _SERVICE_ACCOUNT_DIRS:
        if path.startswith(d):
            return d + "**", path
    if path.startswith("/proc"):
        if "/task" in path:
            path = _PROC_TASK.sub("/proc/*/task/*", path)
        return _PROC.sub("/proc/*", path), path
    if path.startswith(_NOT_SENT):
        return path, path
    return None, path


def _clock() -> float:
    return time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--json", action="store_true",
                    help="stdin is a JSON array of paths; stdout one JSON object")
    ap.add_argument("--agent", action="store_true",
                    help="line mode: print the agent's result instead of the service's")
    args = ap.parse_args()

    raw = sys.stdin.read()
    paths: list[str] = json.loads(raw) if args.json else raw.splitlines()

    t0 = _clock()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
        import torch
        from stringlifier.api import Stringlifier
    torch.set_num_threads(1)
    import_s = _clock() - t0

    t0 = _clock()
    lifier = Stringlifier()
    load_s = _clock() - t0

    t0 = _clock()
    collapsed = [varmor_collapse(lifier, p) for p in paths]
    cpu_s = _clock() - t0
    agent: list[str] = []
    sent = 0
    for path, answer in zip(paths, collapsed, strict=True):
        ruled, to_send = agent_rule(path)
        if ruled is not None:
            agent.append(ruled)
            continue
        sent += 1
        agent.append(answer if to_send == path else varmor_collapse(lifier, to_send))

    figures = {"import_s": import_s, "load_s": load_s, "cpu_s": cpu_s, "paths": len(paths),
               "sent": sent, "torch": str(torch.__version__),
               "threads": torch.get_num_threads()}
    if args.json:
        json.dump({"collapsed": collapsed, "agent": agent, **figures}, sys.stdout)
        sys.stdout.write("\n")
    else:
        sys.stdout.writelines(c + "\n" for c in (agent if args.agent else collapsed))
        rate = len(paths) / cpu_s if cpu_s > 0 else float("inf")
        print(f"stringlifier: import {import_s * 1000:.0f} ms, load {load_s * 1000:.0f} ms,"
              f" {len(paths)} paths in {cpu_s:.2f} s CPU = {rate:,.0f} paths/s"
              f" (torch {torch.__version__}, {torch.get_num_threads()} thread)",
              file=sys.stderr)


if __name__ == "__main__":
    main()
