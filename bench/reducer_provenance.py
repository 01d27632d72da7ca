"""What keeping per-rule provenance costs the reducer, side by side in one run.

The same fast-decoded event structs (array messages as agents send them, 4 pods) are
folded into fresh models twice per round, interleaved: with provenance
(``BehaviourModel.add_events``, what the pipeline does) and without it
(``add_behaviours``, the fold alone). Two mixes: ``repeats`` (500 distinct files read
again and again) and ``cold`` (every file new). CPU time, best of the rounds.

Usage: python bench/reducer_provenance.py [--messages 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from armorflow.aaglob import escape_literal
from armorflow.events import STRUCT_BEHAVIOUR, decode_array_fast, make_event
from armorflow.model import STRUCT_ORIGIN, BehaviourModel

T0 = 1_800_000_000 * 10**9
PER_MESSAGE = 500


def batches(messages: int, distinct: int) -> list[list[Any]]:
    out = []
    for m in range(messages):
        events = [make_event("file", ts=T0 + m * PER_MESSAGE + i, profile="p", node="n1",
                             namespace="ns", pod=f"pod-{m % 4}", container="c",
                             path=f"/data/f{(m * PER_MESSAGE + i) % distinct}", perms="r",
                             owner=False) for i in range(PER_MESSAGE)]
        out.append(decode_array_fast(orjson.dumps(events)))
    return out


def fold(structs: list[list[Any]], provenance: bool) -> float:
    model = BehaviourModel()
    behaviour = STRUCT_BEHAVIOUR["file"]
    started = time.process_time()
    for items in structs:
        if provenance:
            model.add_events("p", "file", items, behaviour, STRUCT_ORIGIN, escape_literal)
        else:
            model.add_behaviours("p", "file", map(behaviour, items), escape_literal)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = args.messages * PER_MESSAGE
    print(f"{events:,} file events in {args.messages} messages, best of {args.rounds} rounds")
    for label, distinct in (("repeats", 500), ("cold", 10**12)):
        structs = batches(args.messages, distinct)
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.rounds):
            for provenance in (False, True):
                best[provenance] = min(best[provenance], fold(structs, provenance))
        off, on = events / best[False], events / best[True]
        print(f"{label:8} without provenance {off:>10,.0f} events/s, with {on:>10,.0f} "
              f"events/s: {on / off:.2f}x")


if __name__ == "__main__":
    main()
