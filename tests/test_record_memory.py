"""``armorflow record``'s sort buffer holds what it says: ~a line's bytes per event.

orjson returns each encoded line in an object that keeps its whole output buffer's heap
allocation; a buffer of 200,000 such lines took 1.7 GB resident. Measured in a fresh
process (resident memory, not the Python allocator's view, which does not see it)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from armorflow.users.record import SpillSorter

def rss_mib():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024

events = [{"v": 1, "kind": "file", "ts": i, "node": "n", "profile": "p", "namespace": "ns",
           "pod": "pod", "container": "c", "container_id": "id", "pid": 1, "comm": "x",
           "path": f"/srv/app/users/{i:08d}/data-{i}.json", "perms": "rw", "owner": True}
          for i in range(50_000)]
sorter = SpillSorter(buffer_events=50_000)
before = rss_mib()
for event in events:
    sorter.add(event)
grown = rss_mib() - before
size = sum(len(line) for _ts, line in sorter._buffer) / 2**20
print(f"{grown:.1f} {size:.1f}")
"""


def test_the_sort_buffer_costs_about_its_lines() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True,
                         text=True).stdout.split()
    grown, lines = float(out[0]), float(out[1])
    # 50,000 lines of ~250 bytes: ~12 MiB of text, plus the objects around it. Before
    # the copy, the same buffer grew the process by ~390 MiB.
    assert lines < 20
    assert grown < 4 * lines + 16, (grown, lines)
