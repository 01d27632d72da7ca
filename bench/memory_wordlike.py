"""Memory and speed on word-like random names: the worst case for a model's size.

Random names made of syllables (``/srv/app/users/tavoremi-kelu.json``) look like words to
the classifier, so each stays a rule of its own: a model of N events is N rules, and
nothing a reducer does can make it smaller (the sibling collapse merges digit runs only;
read-only content merges them at close). What must stay bounded is everything else:
``armorflow record`` (an external merge sort), and the reducer's memory per rule. Each
step runs in a process of its own and reports its own peak RSS (VmHWM):

1. ``ingest``: the pipeline's reducer in process (``Ingestor.apply_batch`` over array
   messages as agents send them, classifier on): events/s, and peak RSS at 1/4, 1/2 and
   all of N, so growth per rule can be read off;
2. ``model``: ``armorflow model --from REC`` (the offline reducer, classifier and
   renderer, the recording streamed): wall time and peak RSS;
3. ``record``: ``armorflow replay REC`` into a fresh embedded broker, then ``armorflow
   record`` of all of it (peak RSS of record alone, the sort buffer at its default).

Usage: python bench/memory_wordlike.py [--events N] [--profiles P] [--seed S] [--skip STEP]
                                      [--max-rules R]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
ARMORFLOW = [sys.executable, "-m", "armorflow.cli"]
CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
T0 = 1_795_000_000 * 10**9


def word(rng: random.Random) -> str:
    """A pronounceable random word of 2-4 syllables."""
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(2, 4)))


def events(n: int, profiles: int, seed: int) -> Iterator[dict[str, object]]:
    """N file events, each a new word-like name, spread over the profiles and 4 pods each."""
    rng = random.Random(seed)
    for i in range(n):
        p = i % profiles
        yield {
            "v": 1, "kind": "file", "ts": T0 + i * 1000, "node": f"node-{i % 3}",
            "profile": f"wordlike-{p}", "namespace": "bench", "pod": f"app-{p}-{i % 4}",
            "container": "app", "container_id": f"c{p}{i % 4}", "pid": 100, "comm": "app",
            "path": f"/srv/app/users/{word(rng)}/{word(rng)}-{word(rng)}.json",
            "perms": "rw", "owner": True,
        }


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_recording(path: Path, n: int, profiles: int, seed: int) -> None:
    with path.open("wb") as out:
        for event in events(n, profiles, seed):
            out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))


# --- steps, each run in a child process ------------------------------------------------


def step_ingest(n: int, profiles: int, seed: int, max_rules: int) -> None:
    from armorflow.control import make_control
    from armorflow.pipeline.ingest import Ingestor
    from armorflow.pipeline.stages import ClassifierStage

    ingest = Ingestor(ClassifierStage().path_mapper(), rule_budget=max_rules or None)
    starts = [make_control("start", f"wordlike-{p}", duration_s=86_400, start_ts=T0,
                           ts=T0).encode() for p in range(profiles)]
    ingest.apply_batch(starts, now_ns=T0)
    batch: list[dict[str, object]] = []
    messages: list[bytes] = []
    marks = {n // 4, n // 2, n}
    started = time.process_time()
    for done, event in enumerate(events(n, profiles, seed), start=1):
        batch.append(event)
        if len(batch) == 500:  # one agent message: one profile's events...
            by_profile: dict[object, list[dict[str, object]]] = {}
            for e in batch:
                by_profile.setdefault(e["profile"], []).append(e)
            messages += [orjson.dumps(group) for group in by_profile.values()]
            batch = []
        if len(messages) >= 20:
            ingest.apply_batch(messages, now_ns=T0)
            messages = []
        if done in marks:
            if messages:
                ingest.apply_batch(messages, now_ns=T0)
                messages = []
            rules = sum(len(m.files) for m in ingest.models.values())
            print(orjson.dumps({"events": done, "rules": rules,
                                "over_budget": ingest.stats.over_budget,
                                "cpu_s": time.process_time() - started,
                                "peak_rss_mib": peak_rss_mib()}).decode(), flush=True)


def run_child(step: str, args: argparse.Namespace) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, "--events", str(args.events),
         "--profiles", str(args.profiles), "--seed", str(args.seed),
         "--max-rules", str(args.max_rules)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )
    return [orjson.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


Completed = subprocess.CompletedProcess[str]


def timed_peak(argv: list[str], **kw: object) -> tuple[float, float, Completed]:
    """Wall seconds and peak RSS (MiB, from wait4's rusage) of one command."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)  # type: ignore[call-overload]
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    done = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    return time.monotonic() - started, usage.ru_maxrss / 1024, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profiles", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", action="append", default=[],
                        choices=["ingest", "model", "record"])
    parser.add_argument("--max-rules", type=int, default=0,
                        help="the pipeline's rule budget per profile (default 0: off, to "
                             "measure the cost per rule; the worker's default is 100,000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "ingest":
        step_ingest(args.events, args.profiles, args.seed, args.max_rules)
        return

    print(f"{args.events:,} file events with word-like random names, {args.profiles} "
          f"profiles, seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="armorflow-wordlike-") as tmp:
        work = Path(tmp)
        recording = work / "wordlike.jsonl"
        write_recording(recording, args.events, args.profiles, args.seed)
        print(f"recording: {recording.stat().st_size / 2**20:,.0f} MiB")

        if "ingest" not in args.skip:
            for row in run_child("ingest", args):
                ev = int(row["events"])  # type: ignore[call-overload]
                print(f"ingest: {ev:>9,} events, {row['rules']:>9,} rules "
                      f"({row['over_budget']:,} over budget), "
                      f"{ev / float(row['cpu_s']):>8,.0f} events/s (CPU), "  # type: ignore[arg-type]
                      f"peak RSS {float(row['peak_rss_mib']):,.0f} MiB")  # type: ignore[arg-type]

        if "model" not in args.skip:
            seconds, rss, done = timed_peak(
                [*ARMORFLOW, "model", "--from", str(recording), "--out", str(work / "models"),
                 "--duration", "24h", "--max-rules", str(args.max_rules or 10**9)], cwd=ROOT)
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
            print(f"model:  {seconds:,.1f} s wall, {args.events / seconds:,.0f} events/s, "
                  f"peak RSS {rss:,.0f} MiB ({status})")
            if done.returncode:
                print(done.stderr[-2000:])

        if "record" not in args.skip:
            sys.path.insert(0, str(ROOT))
            from armorflow.broker import running_broker

            with running_broker() as broker:
                bootstrap = broker.bootstrap_servers
                replay = subprocess.run(
                    [*ARMORFLOW, "replay", str(recording), "-b", bootstrap, "--no-progress"],
                    capture_output=True, text=True, cwd=ROOT)
                if replay.returncode:
                    print(replay.stderr[-2000:])
                seconds, rss, done = timed_peak(
                    [*ARMORFLOW, "record", "--out", str(work / "copy.jsonl"), "-b", bootstrap,
                     "--from-beginning", "--no-progress"], cwd=ROOT)
                lines = sum(1 for _ in (work / "copy.jsonl").open("rb")) if (
                    work / "copy.jsonl").exists() else 0
                print(f"record: {lines:,} events in {seconds:,.1f} s, peak RSS {rss:,.0f} MiB"
                      f" (exit {done.returncode})")
                if done.returncode:
                    print(done.stderr[-2000:])


if __name__ == "__main__":
    main()
