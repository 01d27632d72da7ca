"""Overhead of the eBPF tracer on a syscall-heavy loop and on real workloads, from one run.

The workload is a small C program compiled here with gcc: ``--opens`` openat/close pairs
over a handful of real files, then ``--forks`` fork/exec/wait of /usr/bin/true. It runs as
a local container (new mount and pid namespaces) three ways per round: with no tracer
attached (baseline), with the tracer attached and the workload as its target (traced),
and with only empty programs on the two raw syscall hooks (floor: what any syscall tracer
costs here). The three are interleaved in a rotating order within each round, so drift
in the load of the (shared) machine falls on all of them alike.

The ratio is taken on the workload's CPU time (user + system, from wait4): the BPF
programs run in the workload's syscalls and are charged to it, while CPU time is
insensitive to other load on a shared machine; wall-clock ratios are printed as well.

Beside the worst-case loop, real programs (``bench/real_workloads.py``): gcc building a
real project, nginx under load, redis-server under its own benchmark, each measured the
same three ways, interleaved the same way, as CPU time per unit of work.

    .venv/bin/python bench/agent_overhead.py [--opens 1000000] [--forks 2000] [--rounds 5]
        [--workloads compile,nginx,redis] [--real-rounds 3] [--skip-loop]
        [--update-doc docs/performance.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armorflow.agents.bpf import Attribution, Tracer, TracerStats, loader
from armorflow.agents.localrun import LocalContainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_workloads  # a module of this folder, not of the package

WORKLOAD_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *paths[] = {
    "/etc/hostname", "/etc/passwd", "/etc/hosts", "/etc/nsswitch.conf",
    "/usr/lib/os-release", "/usr/bin/true", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/tmp",
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu(int who) {
    struct rusage u;
    getrusage(who, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6
        + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    long opens = atol(argv[1]);
    int forks = atoi(argv[2]);
    double t0 = now(), c0 = cpu(RUSAGE_SELF);
    for (long i = 0; i < opens; i++) {
        int fd = openat(AT_FDCWD, paths[i & 7], O_RDONLY | O_CLOEXEC);
        if (fd < 0) { perror(paths[i & 7]); return 1; }
        close(fd);
    }
    double t1 = now(), c1 = cpu(RUSAGE_SELF);
    for (int j = 0; j < forks; j++) {
        pid_t p = fork();
        if (p == 0) { execl("/usr/bin/true", "true", (char *)0); _exit(127); }
        int status;
        waitpid(p, &status, 0);
    }
    double t2 = now(), c2 = cpu(RUSAGE_SELF) + cpu(RUSAGE_CHILDREN);
    FILE *out = fopen(argv[3], "w");
    fprintf(out, "%f %f %f %f\n", t1 - t0, c1 - c0, t2 - t1, c2 - c1);
    fclose(out);
    return 0;
}
"""


@dataclass
class Run:
    open_wall: float
    open_cpu: float
    fork_wall: float
    fork_cpu: float

    @property
    def wall(self) -> float:
        return self.open_wall + self.fork_wall

    @property
    def cpu(self) -> float:
        return self.open_cpu + self.fork_cpu


#: The least any syscall tracer costs: one empty program on each raw syscall hook.
FLOOR_PROGRAMS = b"""
RAW_TRACEPOINT_PROBE(sys_enter) { return 0; }
RAW_TRACEPOINT_PROBE(sys_exit) { return 0; }
"""


def load_floor() -> Any:
    import os

    headers = loader.kernel_source_dir()
    if headers is not None:
        os.environ["BCC_KERNEL_SOURCE"] = str(headers)
    from bcc import BPF

    return BPF(text=FLOOR_PROGRAMS)


def build(workdir: Path) -> Path:
    source = workdir / "workload.c"
    source.write_text(WORKLOAD_C)
    binary = workdir / "workload"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def run_once(binary: Path, args: argparse.Namespace, result: Path, tracer: Tracer | None) -> Run:
    box = LocalContainer([str(binary), str(args.opens), str(args.forks), str(result)]).spawn()
    target = None
    if tracer is not None:
        target = tracer.add_target(Attribution(profile="bench-overhead"), mntns=box.mntns,
                                   pid=box.pid)
    box.release()
    published = 0
    while box.poll() is None:
        if tracer is not None:
            published += len(tracer.poll(100))
        else:
            time.sleep(0.05)
    if tracer is not None and target is not None:
        published += len(tracer.drain())
        tracer.remove_target(target)
    if box.poll() != 0:
        raise SystemExit(f"workload failed with exit code {box.poll()}")
    open_wall, open_cpu, fork_wall, fork_cpu = map(float, result.read_text().split())
    return Run(open_wall, open_cpu, fork_wall, fork_cpu)


STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def _program_counters() -> dict[int, tuple[str, int, int]]:
    import json

    listed = json.loads(subprocess.run(["bpftool", "prog", "show", "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    return {p["id"]: (p.get("name", ""), p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in listed}


def program_times(binary: Path, args: argparse.Namespace, result: Path,
                  tracer: Tracer) -> dict[str, tuple[int, float]]:
    """Runs and mean ns per run of each tracer program over one extra traced run, with the
    kernel's BPF run-time statistics on (they cost a clock read per run, so this run is
    not one of the timed ones)."""
    previous = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")
    try:
        before = _program_counters()
        run_once(binary, args, result, tracer)
        after = _program_counters()
    finally:
        STATS_SYSCTL.write_text(previous)
    import re

    source = loader.program_source()
    ours = {n for x in re.findall(r"RAW_TRACEPOINT_PROBE\((\w+)\)", source)
            for n in (x, f"raw_tracepoint__{x}")}
    ours |= {f"tracepoint__{a}__{b}"
             for a, b in re.findall(r"TRACEPOINT_PROBE\((\w+), (\w+)\)", source)}
    out: dict[str, tuple[int, float]] = {}
    for prog_id, (name, run_ns, runs) in after.items():
        if name in ours and prog_id in before and runs > before[prog_id][2]:
            count = runs - before[prog_id][2]
            out[name] = (count, (run_ns - before[prog_id][1]) / count)
    return out


def program_report(per_program: dict[str, tuple[int, float]]) -> str:
    lines = [
        "Where the time goes (one more traced run with `kernel.bpf_stats_enabled=1`; the "
        "figures include the statistics' own clock reads):",
        "",
        "| program | runs | mean ns per run |",
        "|---|---|---|",
    ]
    for name, (runs, mean) in sorted(per_program.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| `{name}` | {runs:,} | {mean:.0f} |")
    return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(args: argparse.Namespace, base: list[Run], traced: list[Run], floor: list[Run],
           stats: TracerStats, compile_s: float) -> str:
    def ratio(attr: str) -> float:
        return median([getattr(r, attr) for r in traced]) / median([getattr(r, attr) for r in base])

    def floor_ratio(attr: str) -> float:
        return median([getattr(r, attr) for r in floor]) / median([getattr(r, attr) for r in base])

    pair_ns = (median([r.open_cpu for r in traced]) - median([r.open_cpu for r in base])) \
        / args.opens * 1e9
    floor_ns = (median([r.open_cpu for r in floor]) - median([r.open_cpu for r in base])) \
        / args.opens * 1e9

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()} (kernel {platform.release()}, "
        f"{_cpus()} CPUs, shared with other work) by `bench/agent_overhead.py --opens "
        f"{args.opens} --forks {args.forks} --rounds {args.rounds}`: medians of "
        f"{len(base)} baseline, {len(traced)} traced and {len(floor)} floor runs; CPU = user + "
        "system time of the workload and its children. *Floor*: only an empty program on "
        "each of `raw_syscalls:sys_enter` and `sys_exit`, the least any syscall tracer costs.",
        "",
        "| phase | baseline CPU s | traced CPU s | CPU ratio | floor CPU ratio "
        "| baseline wall s | traced wall s | wall ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, cpu_attr, wall_attr in (
        (f"{args.opens:,} openat+close", "open_cpu", "open_wall"),
        (f"{args.forks:,} fork+exec+wait", "fork_cpu", "fork_wall"),
        ("whole workload", "cpu", "wall"),
    ):
        lines.append(
            f"| {label} | {median([getattr(r, cpu_attr) for r in base]):.3f} "
            f"| {median([getattr(r, cpu_attr) for r in traced]):.3f} | {ratio(cpu_attr):.3f}x "
            f"| {floor_ratio(cpu_attr):.3f}x "
            f"| {median([getattr(r, wall_attr) for r in base]):.3f} "
            f"| {median([getattr(r, wall_attr) for r in traced]):.3f} | {ratio(wall_attr):.3f}x |"
        )
    per_run = len(traced)
    lines += [
        "",
        f"Events over the {per_run} traced runs: {stats.observed:,} target behaviours seen "
        f"by the kernel programs, {stats.emitted:,} records sent over the ring buffer after "
        f"in-kernel deduplication, {stats.published:,} schema events published, "
        f"{stats.drops} dropped, {sum(stats.skipped.values())} skipped"
        + (" (" + ", ".join(f"{reason}: {n}" for reason, n in sorted(stats.skipped.items()))
           + "; a repeated open is the same path, permissions and owner opened by another "
           "name, already reported)" if stats.skipped else "")
        + ". "
        f"Compile + load + attach: {compile_s:.1f} s.",
        "",
        f"Per openat+close pair the tracer adds {pair_ns:.0f} ns of CPU, of which "
        f"{floor_ns:.0f} ns is the floor (entering the two raw syscall hooks).",
        "",
        "Per-round CPU ratios (traced / baseline of the same round), openat+close: "
        + ", ".join(f"{t.open_cpu / b.open_cpu:.2f}" for t, b in zip(traced, base, strict=False))
        + "; whole workload: "
        + ", ".join(f"{t.cpu / b.cpu:.2f}" for t, b in zip(traced, base, strict=False))
        + ". The spread is the machine's noise; the medians above are the result.",
        "",
        f"Target of issue 6, at most 1.10x: openat+close {ratio('open_cpu'):.2f}x "
        f"({'met' if ratio('open_cpu') <= 1.10 else 'not met'}), whole workload "
        f"{ratio('cpu'):.2f}x ({'met' if ratio('cpu') <= 1.10 else 'not met'}).",
    ]
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def update_doc(doc: Path, body: str) -> None:
    header = "## Agent overhead"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    section = f"{header}\n\n{body}\n"
    if header in text:
        start = text.index(header)
        rest = text[start + len(header):]
        next_header = rest.find("\n## ")
        end = start + len(header) + (next_header + 1 if next_header >= 0 else len(rest))
        text = text[:start] + section + ("\n" + text[end:] if next_header >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


@dataclass
class RealRun:
    cpu: float
    wall: float
    units: int

    @property
    def per_unit(self) -> float:
        return self.cpu / self.units


def run_real(workload: real_workloads.Workload, tracer: Tracer | None) -> RealRun:
    """One run of a real workload in a local container, traced or not."""
    box = LocalContainer(workload.argv()).spawn()
    target = None
    if tracer is not None:
        target = tracer.add_target(Attribution(profile=f"bench-{workload.name}"),
                                   mntns=box.mntns, pid=box.pid)
    started = time.monotonic()
    box.release()
    done: dict[str, int] = {}
    failed: list[BaseException] = []
    driver = None
    if workload.drive is not None:
        def drive() -> None:
            try:
                done["units"] = workload.drive(box)  # type: ignore[misc]
            except BaseException as exc:  # re-raised below, in the main thread
                failed.append(exc)
                box.kill()

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
    while box.poll() is None or (driver is not None and driver.is_alive()):
        if tracer is not None:
            tracer.poll(100)
        else:
            time.sleep(0.05)
    wall = time.monotonic() - started
    if tracer is not None and target is not None:
        tracer.drain()
        tracer.remove_target(target)
    if failed:
        raise failed[0]
    if box.poll() != 0 or box.rusage is None:
        raise SystemExit(f"{workload.name} failed with exit code {box.poll()}")
    usage = box.rusage
    return RealRun(usage.ru_utime + usage.ru_stime, wall, done.get("units", workload.units))


def real_report(results: dict[str, dict[str, list[RealRun]]],
                workloads: dict[str, real_workloads.Workload], rounds: int) -> str:
    lines = [
        f"Real workloads (`bench/real_workloads.py`), {rounds} interleaved rounds, medians "
        "of CPU time (user + system of the container's processes) per unit of work:",
        "",
        "| workload | unit | units per run | baseline CPU per unit | traced | CPU ratio "
        "| floor CPU ratio | tracer above the floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        def per(kind: str, runs: dict[str, list[RealRun]] = runs) -> float:
            return median([r.per_unit for r in runs[kind]])

        base, traced, floor = per("baseline"), per("traced"), per("floor")
        units = median([float(r.units) for r in runs["traced"]])
        scale, label = (1e3, "ms") if base > 1e-3 else (1e6, "us")
        lines.append(
            f"| {name} | {workloads[name].unit} | {units:,.0f} | {base * scale:.3f} {label} "
            f"| {traced * scale:.3f} {label} | {traced / base:.3f}x | {floor / base:.3f}x "
            f"| {(traced - floor) / base:+.3f} |")
    worst = max((median([r.per_unit for r in runs["traced"]])
                 / median([r.per_unit for r in runs["baseline"]]), name)
                for name, runs in results.items())
    lines += ["", f"Target of issue #15, at most 1.05x CPU on each realistic workload: worst "
              f"{worst[0]:.3f}x ({worst[1]}): {'met' if worst[0] <= 1.05 else 'not met'}."]
    return "\n".join(lines)


def measure_real(args: argparse.Namespace, workdir: Path, tracer: Tracer,
                 floor_bpf: Any) -> str:
    real_workloads.ensure_programs()
    makers: dict[str, Callable[[], real_workloads.Workload]] = {
        "compile": lambda: real_workloads.compile_workload(workdir),
        "nginx": lambda: real_workloads.nginx_workload(workdir, args.nginx_seconds),
        "redis": lambda: real_workloads.redis_workload(workdir, args.redis_requests),
    }
    chosen = [w for w in args.workloads.split(",") if w]
    unknown = sorted(set(chosen) - makers.keys())
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)}")
    workloads = {name: makers[name]() for name in chosen}
    results: dict[str, dict[str, list[RealRun]]] = {
        name: {"baseline": [], "traced": [], "floor": []} for name in workloads}

    def traced(w: real_workloads.Workload) -> RealRun:
        tracer.resume()
        try:
            return run_real(w, tracer)
        finally:
            tracer.pause()

    def floored(w: real_workloads.Workload) -> RealRun:
        loader.attach(floor_bpf)
        try:
            return run_real(w, None)
        finally:
            loader.detach(floor_bpf)

    ways: list[tuple[str, Callable[[real_workloads.Workload], RealRun]]] = [
        ("baseline", lambda w: run_real(w, None)), ("traced", traced), ("floor", floored)]
    for i in range(args.real_rounds):
        for name, workload in workloads.items():
            for kind, run in ways[i % 3:] + ways[: i % 3]:
                result = run(workload)
                results[name][kind].append(result)
                print(f"round {i + 1} {name} {kind}: {result.cpu:.3f} s CPU, "
                      f"{result.units} {workload.unit}s", file=sys.stderr, flush=True)
    return real_report(results, workloads, args.real_rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opens", type=int, default=1_000_000)
    parser.add_argument("--forks", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workloads", default="compile,nginx,redis",
                        help="real workloads to measure beside the loop ('' for none)")
    parser.add_argument("--real-rounds", type=int, default=3)
    parser.add_argument("--nginx-seconds", type=float, default=5.0)
    parser.add_argument("--redis-requests", type=int, default=20_000)
    parser.add_argument("--skip-loop", action="store_true",
                        help="only the real workloads")
    parser.add_argument("--update-doc", type=Path, default=None,
                        help="rewrite the '## Agent overhead' section of this markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="armorflow-bench-") as tmp:
        workdir = Path(tmp)
        binary = build(workdir)
        result = workdir / "result"
        base: list[Run] = []
        traced: list[Run] = []
        floor: list[Run] = []
        started = time.monotonic()
        tracer = Tracer().start()
        compile_s = time.monotonic() - started
        floor_bpf = load_floor()
        loader.detach(floor_bpf)
        tracer.pause()

        def run_base() -> None:
            base.append(run_once(binary, args, result, None))

        def run_traced() -> None:
            tracer.resume()
            try:
                traced.append(run_once(binary, args, result, tracer))
            finally:
                tracer.pause()

        def run_floor() -> None:
            loader.attach(floor_bpf)
            try:
                floor.append(run_once(binary, args, result, None))
            finally:
                loader.detach(floor_bpf)

        # Interleaved, in a rotating order, so that drift in the machine's load (it is
        # shared) falls on all three alike; programs are attached only for their runs.
        order = [("baseline", run_base, base), ("traced", run_traced, traced),
                 ("floor", run_floor, floor)]
        real = ""
        try:
            for i in range(0 if args.skip_loop else args.rounds):
                for name, run, runs in order[i % 3:] + order[: i % 3]:
                    run()
                    print(f"round {i + 1} {name}: {runs[-1]}", file=sys.stderr, flush=True)
            stats = tracer.stats()
            if args.workloads:
                real = measure_real(args, workdir, tracer, floor_bpf)
            per_program: dict[str, tuple[int, float]] = {}
            if not args.skip_loop:
                tracer.resume()
                per_program = program_times(binary, args, result, tracer)
        finally:
            tracer.stop()
            floor_bpf.cleanup()
    if args.skip_loop:
        print(real)
        return
    body = report(args, base, traced, floor, stats, compile_s)
    body += "\n\n" + program_report(per_program)
    if real:
        body += "\n\n" + real
    print(body)
    if args.update_doc is not None:
        update_doc(args.update_doc, body)


if __name__ == "__main__":
    main()
