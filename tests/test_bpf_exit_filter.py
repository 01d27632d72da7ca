"""The exit hook's early filter (dispatch.c ``wanted_at_exit``) lets through exactly the
syscalls the exit-side concerns handle: a syscall added to one of them and not to the
filter would silently never be recorded."""

from __future__ import annotations

import re
from pathlib import Path

BPF = Path(__file__).resolve().parents[1] / "armorflow" / "agents" / "bpf"
CASE = re.compile(r"case (SYSNR_[A-Z0-9_]+)")


def _function(source: str, name: str) -> str:
    """The body of ``name`` in ``source``: from its signature to the next top-level '}'."""
    start = source.index(f" {name}(")
    end = source.index("\n}\n", start)
    return source[start:end]


def test_the_exit_filter_matches_what_the_concerns_handle() -> None:
    handled: set[str] = set()
    for file, function in (("descriptors.c", "descriptors_on_exit"),
                           ("paths.c", "paths_on_exit")):
        handled |= set(CASE.findall(_function((BPF / file).read_text(), function)))
    dispatch = (BPF / "dispatch.c").read_text()
    exit_hook = dispatch[dispatch.index("RAW_TRACEPOINT_PROBE(sys_exit)"):]
    # files.c's opens are dispatched by the exit hook's own switch.
    handled |= set(CASE.findall(exit_hook.split("descriptors_on_exit")[0]))
    wanted = set(CASE.findall(_function(dispatch, "wanted_at_exit")))
    assert handled, "no case found: the sources changed shape"
    assert wanted == handled, (sorted(wanted - handled), sorted(handled - wanted))
