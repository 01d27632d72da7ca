"""Follow a growing log file across rotation and truncation, with a durable read position.

The position is (device, inode, offset of the next unread byte). It is only ever advanced
past complete lines, so a line being written when we look is read whole, later.

* Rotation (``audit.log`` renamed to ``audit.log.1``, a new ``audit.log`` created): the
  open descriptor still reads the old inode, so we finish it to its end before switching
  to the new file from offset 0. Nothing written to the old file after its rename is lost.
* Truncation (``copytruncate``, ``> audit.log``): the file got shorter than our offset, so
  we start over at 0.
* Restart: :class:`Checkpoint` holds the last committed position. If the inode at the path
  still matches, we continue at the offset; if the file was rotated while we were down,
  the old inode is looked for among its siblings (``audit.log.1`` …) and finished first.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from armorflow.agents.audit.records import MAX_LINE_BYTES

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Position:
    path: str
    dev: int
    inode: int
    offset: int


class Checkpoint:
    """A position saved atomically (write to a temporary file, fsync, rename, fsync dir)."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> Position | None:
        try:
            raw = orjson.loads(self.path.read_bytes())
            return Position(str(raw["path"]), int(raw["dev"]), int(raw["inode"]),
                            int(raw["offset"]))
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # A torn or edited checkpoint must not stop the agent; it re-reads from the
            # start of the current file, which repeats rather than skips.
            log.error("ignoring unreadable checkpoint %s: %s", self.path, exc)
            return None

    def save(self, position: Position) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(orjson.dumps(asdict(position)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _find_inode(path: Path, dev: int, inode: int) -> Path | None:
    """The rotated file that still has ``inode`` (``audit.log.1``, ``kern.log.0`` ...)."""
    with contextlib.suppress(OSError):
        for sibling in path.parent.iterdir():
            if not sibling.name.startswith(path.name) or sibling == path:
                continue
            with contextlib.suppress(OSError):
                st = sibling.stat()
                if st.st_ino == inode and st.st_dev == dev:
                    return sibling
    return None


class FileFollower:
    """Yields complete lines of ``path`` with the position after each one."""

    def __init__(self, path: Path, start: Position | None = None, *, from_end: bool = False):
        self.path = path
        self.rotations = 0
        self.truncations = 0
        self.oversize_lines = 0
        self._fd: int | None = None
        self._dev = 0
        self._inode = 0
        self._offset = 0
        self._buffer = b""
        self._skipping = False
        #: True when the last read reached the end of the data written so far.
        self.at_eof = False
        self._open(start, from_end)

    # --- opening ----------------------------------------------------------------------

    def _open_fd(self, path: Path, offset: int) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        if offset > st.st_size:
            log.warning("%s is shorter (%d) than the saved offset %d: truncated, reading from 0",
                        path, st.st_size, offset)
            self.truncations += 1
            offset = 0
        self._close()
        self._fd, self._dev, self._inode, self._offset = fd, st.st_dev, st.st_ino, offset
        self._buffer = b""
        return True

    def _open(self, start: Position | None, from_end: bool) -> None:
        if start is not None:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == (start.dev, start.inode):
                self._open_fd(self.path, start.offset)
                return
            rotated = _find_inode(self.path, start.dev, start.inode)
            if rotated is not None:
                log.info("%s was rotated while stopped: finishing %s from offset %d",
                         self.path, rotated, start.offset)
                self._open_fd(rotated, start.offset)
                return
            log.warning("the file of the checkpoint (inode %d) is gone: reading %s from 0",
                        start.inode, self.path)
        if self._open_fd(self.path, 0) and from_end and self._fd is not None:
            self._offset = os.fstat(self._fd).st_size

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self._close()

    # --- reading ----------------------------------------------------------------------

    @property
    def position(self) -> Position:
        """Where the next unread line starts."""
        return Position(str(self.path), self._dev, self._inode, self._offset)

    def _switch_if_rotated(self) -> bool:
        """True when a new file took the path (the current one is finished first)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) != (self._dev, self._inode)

    def read_lines(self, max_lines: int = 10_000) -> list[tuple[bytes, Position]]:
        """Complete lines available now (possibly none), each with the position after it."""
        if self._fd is None and not self._open_fd(self.path, 0):
            self.at_eof = True
            return []
        out: list[tuple[bytes, Position]] = []
        while len(out) < max_lines:
            assert self._fd is not None
            size = os.fstat(self._fd).st_size
            read_at = self._offset + len(self._buffer)
            if size < read_at:
                log.warning("%s was truncated (%d < %d): reading from 0", self.path, size, read_at)
                self.truncations += 1
                self._offset, self._buffer = 0, b""
                continue
            chunk = os.pread(self._fd, READ_CHUNK, read_at) if size > read_at else b""
            if chunk:
                self._buffer += chunk
                self._drain_buffer(out, max_lines)
                continue
            # At the end of this inode: a rotated-away file is done once fully read.
            if self._switch_if_rotated():
                if self._buffer:
                    # The writer never finished that line and never will: hand it over.
                    self._offset += len(self._buffer)
                    out.append((self._buffer, self.position))
                    self._buffer = b""
                self.rotations += 1
                log.info("%s rotated: switching to the new file", self.path)
                self._close()
                if not self._open_fd(self.path, 0):
                    break
                continue
            self.at_eof = True
            return out
        self.at_eof = False
        return out

    def _drain_buffer(self, out: list[tuple[bytes, Position]], max_lines: int) -> None:
        start = 0
        buf = self._buffer
        if self._skipping:
            newline = buf.find(b"\n")
            if newline < 0:
                self._offset += len(buf)
                self._buffer = b""
                return
            self._offset += newline + 1
            start = newline + 1
            self._skipping = False
        while len(out) < max_lines:
            newline = buf.find(b"\n", start)
            if newline < 0:
                break
            line = buf[start:newline]
            start = newline + 1
            self._offset += len(line) + 1
            if len(line) > MAX_LINE_BYTES:
                self.oversize_lines += 1
                log.warning("%s: skipped a line of %d bytes ending at offset %d",
                            self.path, len(line), self._offset)
                continue
            out.append((line, self.position))
        self._buffer = buf[start:]
        if len(self._buffer) > MAX_LINE_BYTES:
            # No newline in sight: count the runaway line and skip it up to its newline.
            self.oversize_lines += 1
            log.warning("%s: skipping a line longer than %d bytes at offset %d",
                        self.path, MAX_LINE_BYTES, self._offset)
            self._offset += len(self._buffer)
            self._buffer = b""
            self._skipping = True
