"""Reading a recording that may be damaged: keep every good event, say in one line what
was wrong with the file.

The offline verbs (``model``, ``replay``, ``query``, ``report --events``) read recordings
through :class:`RecordingReader`:

* **Compression is recognised by content**, not by name: gzip and zstd by their magic
  bytes, anything else as plain JSON Lines. A file named ``.gz`` that is plain text (or a
  ``.jsonl`` that is compressed) is read as what it is, with a note saying so.
* **A truncated or corrupt compressed stream ends the reading, not the verb.** The events
  decoded before the damage are kept and :attr:`RecordingReport.damage` says where it
  stopped ("truncated gzip stream after 1,234 events"). A zstd stream that ends inside a
  frame is detected too (the library's stream reader would end silently there).
* Bad lines go to :class:`~armorflow.events.Rejects` as before (numbered, with a reason).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal, cast

from armorflow.events import Event, Rejects, read_events

Compression = Literal["gzip", "zstd", "plain"]

_MAGIC: Final[dict[bytes, Compression]] = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_SUFFIX: Final[dict[str, Compression]] = {".gz": "gzip", ".zst": "zstd"}
#: Compressed bytes fed to the zstd decoder at a time (bounds its output per call).
_ZSTD_INPUT_CHUNK: Final = 16 << 10


def sniff_compression(path: Path) -> Compression:
    """What the file holds, from its first bytes."""
    with path.open("rb") as f:
        head = f.read(4)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return "plain"


def named_compression(path: Path) -> Compression:
    """What the file's name says it holds."""
    return _SUFFIX.get(path.suffix, "plain")


class _ZstdReader(io.RawIOBase):
    """Decompresses zstd frames one after another and raises :class:`EOFError` when the
    input ends inside a frame, instead of ending quietly as if the data were whole."""

    def __init__(self, raw: IO[bytes]):
        import zstandard

        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = self._dctx.decompressobj()
        self._in_frame = False
        self._out = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._pos >= len(self._out):
            chunk = self._raw.read(_ZSTD_INPUT_CHUNK)
            if not chunk:
                if self._in_frame:
                    raise EOFError("the zstd stream ends inside a frame")
                return 0
            self._out, self._pos = self._decompress(chunk), 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            self._in_frame = True
            out.append(self._frame.decompress(data))
            if not self._frame.eof:
                break
            # A frame ended: what follows it is the next frame (concatenated files).
            data = self._frame.unused_data
            self._frame = self._dctx.decompressobj()
            self._in_frame = False
        return b"".join(out)

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_by_content(path: Path, compression: Compression) -> IO[bytes]:
    if compression == "gzip":
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    if compression == "zstd":
        return io.BufferedReader(_ZstdReader(path.open("rb")))
    return path.open("rb")


def read_errors() -> tuple[type[BaseException], ...]:
    """What a damaged compressed stream raises while being read."""
    import zstandard

    return (EOFError, OSError, zlib.error, zstandard.ZstdError)


def stream_is_whole(path: Path) -> bool:
    """Whether a (compressed) recording decodes to its end: one pass, output discarded."""
    with open_by_content(path, sniff_compression(path)) as stream:
        try:
            while stream.read(1 << 20):
                pass
        except read_errors():
            return False
    return True


@dataclass
class RecordingReport:
    """What reading a recording found besides its events."""

    path: Path
    compression: Compression
    named: Compression
    events: int = 0
    #: Why the stream stopped early (None: read to its end).
    damage: str | None = None

    @property
    def mislabelled(self) -> bool:
        return self.compression != self.named

    def notes(self, kept: str) -> list[str]:
        """One line per finding; ``kept`` says what the verb did with the good part
        (e.g. "modeled what was read")."""
        lines = []
        if self.mislabelled:
            what = "plain JSON Lines" if self.compression == "plain" else self.compression
            lines.append(f"{self.path}: named {self.path.suffix or 'without a suffix'} but "
                         f"holds {what}; read as {what}")
        if self.damage is not None:
            stream = "" if self.compression == "plain" else f"{self.compression} "
            lines.append(f"{self.path}: truncated or corrupt {stream}stream after "
                         f"{self.events:,} events ({self.damage}); {kept}")
        return lines


class RecordingReader:
    """The valid events of a recording, robust to damage (see the module doc)."""

    def __init__(self, path: Path, rejects: Rejects):
        self.path = path
        self.rejects = rejects
        self.report = RecordingReport(path, sniff_compression(path), named_compression(path))

    def events(self) -> Iterator[Event]:
        with open_by_content(self.path, self.report.compression) as stream:
            decoded = read_events(stream, self.rejects)
            while True:
                try:
                    event = next(decoded)
                except StopIteration:
                    return
                except read_errors() as exc:
                    self.report.damage = str(exc) or type(exc).__name__
                    return
                self.report.events += 1
                yield event


def read_recording(path: Path, rejects: Rejects) -> tuple[Iterator[Event], RecordingReport]:
    """The events of ``path`` and the report that fills in as they are read."""
    reader = RecordingReader(path, rejects)
    return reader.events(), reader.report
