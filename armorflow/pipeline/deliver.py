"""Hand a closed, rendered window to the sink its URL names (``--sink``), and the
offline writer of ``armorflow model``: the same file sink, so offline and streaming runs
write the same files."""

from __future__ import annotations

from pathlib import Path

from armorflow.pipeline.sink import Sink, SinkResult, completed_from_window, open_sink
from armorflow.pipeline.sink.files import FileSink
from armorflow.pipeline.stages import ClosedWindow


class SinkDeliverer:
    """Opens the sink once and writes each closed window to it."""

    def __init__(self, url: str) -> None:
        self.sink: Sink = open_sink(url)

    def __call__(self, closed: ClosedWindow) -> dict[str, str]:
        result = self.sink.write(completed_from_window(closed))
        return _reference(result)


def _reference(result: SinkResult) -> dict[str, str]:
    """What the status message tells the operator about the written resource."""
    return {"namespace": result.namespace, "name": result.name, "location": result.location,
            "storageType": result.storage_type}


def write_offline(out: Path, closed: ClosedWindow) -> list[Path]:
    """Write a profile's ArmorProfileModel YAML, model JSON and both profiles into ``out``."""
    sink = FileSink(out)
    result = sink.write(completed_from_window(closed))
    paths = sink.paths(result.namespace, result.name)
    return [path for path in paths.values() if path.exists()]
