"""The eBPF tracer (BCC, tracepoints only): :class:`Tracer` captures what the processes of
chosen mount namespaces or pids do and hands out schema v1 events."""

from armorflow.agents.attribution import Attribution
from armorflow.agents.bpf.convert import UNCONFINED
from armorflow.agents.bpf.loader import LoadError, Sizes
from armorflow.agents.bpf.tracer import Tracer, TracerError, TracerStats, mount_namespace_of

__all__ = [
    "UNCONFINED",
    "Attribution",
    "LoadError",
    "Sizes",
    "Tracer",
    "TracerError",
    "TracerStats",
    "mount_namespace_of",
]
