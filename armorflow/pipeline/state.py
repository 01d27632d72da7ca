"""How a profile's model is stored in the pipeline's changelog-backed table.

A model is split into its entries (a file rule, a syscall, ...), and the entries into a
fixed number of buckets by a stable hash; one table row holds one bucket. A batch
rewrites only the buckets it changed, so the changelog carries deltas rather than whole
models, and no row grows past ``1/BUCKETS`` of the model: a large model never becomes a
single message over the broker's size limit.

Row key: the JSON array ``["profile", bucket]``: an encoding, not a separator, so no
profile name (whatever it contains) can make its rows read as another profile's. The
windows table's key is the profile name itself, which never starts with ``[`` (names are
DNS-1123, see :mod:`armorflow.names`); :func:`key_profile` reads both, and rows go to the
profile's partition (see :class:`armorflow.pipeline.worker.ProfileTable`). Row value: a
JSON object mapping each entry (as a JSON array) to its value.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Final

import orjson

from armorflow.jsonbytes import dumps_kept
from armorflow.model import BehaviourModel, EntryKey

log = logging.getLogger(__name__)

BUCKETS: Final = 64


def _encode(entry: EntryKey) -> str:
    return orjson.dumps(list(entry)).decode()


def bucket_of(encoded_entry: str) -> int:
    return zlib.crc32(encoded_entry.encode()) % BUCKETS


class RowKeyError(ValueError):
    """A table key that armorflow did not write (an older layout, or a forged row)."""


def row_key(profile: str, bucket: int) -> bytes:
    return dumps_kept([profile, bucket])  # kept by the table store, with its row


def key_profile(key: bytes) -> str:
    """The profile a key of the windows or the models table belongs to."""
    if not key.startswith(b"["):
        return key.decode()
    return row_profile(key)


def row_profile(key: bytes) -> str:
    """The profile of a models-table row key (:func:`row_key`); RowKeyError otherwise."""
    try:
        decoded = orjson.loads(key)
    except orjson.JSONDecodeError:
        decoded = None
    if (not isinstance(decoded, list) or len(decoded) != 2 or not isinstance(decoded[0], str)
            or type(decoded[1]) is not int):
        raise RowKeyError(f"not a model row key: {key[:80]!r}")
    return decoded[0]


class ModelRows:
    """The bucket index of the models a worker owns, and the rows to write."""

    def __init__(self) -> None:
        #: profile -> bucket -> encoded entries in that bucket
        self._index: dict[str, dict[int, set[str]]] = {}

    def forget(self, profile: str | None = None) -> None:
        if profile is None:
            self._index.clear()
        else:
            self._index.pop(profile, None)

    def changed_rows(
        self, profile: str, model: BehaviourModel, dirty: Iterable[EntryKey]
    ) -> Iterator[tuple[bytes, bytes]]:
        """The rows to (re)write after ``dirty`` entries of ``model`` changed."""
        buckets = self._index.setdefault(profile, {})
        touched: set[int] = set()
        for entry in dirty:
            encoded = _encode(entry)
            bucket = bucket_of(encoded)
            buckets.setdefault(bucket, set()).add(encoded)
            touched.add(bucket)
        for bucket in sorted(touched):
            row = {
                encoded: model.entry_value(tuple(orjson.loads(encoded)))
                for encoded in buckets[bucket]
            }
            yield row_key(profile, bucket), dumps_kept(row, orjson.OPT_SORT_KEYS)

    def load(self, rows: Iterable[tuple[bytes, bytes]]) -> dict[str, BehaviourModel]:
        """Rebuild the models (and this index) from stored rows."""
        models: dict[str, BehaviourModel] = {}
        for key, value in rows:
            try:
                profile = row_profile(key)
            except RowKeyError as exc:
                log.warning("model row skipped: %s", exc)
                continue
            model = models.setdefault(profile, BehaviourModel())
            buckets = self._index.setdefault(profile, {})
            row: dict[str, Any] = orjson.loads(value)
            for encoded, entry_value in row.items():
                entry = tuple(orjson.loads(encoded))
                model.apply_entry(entry, entry_value)
                buckets.setdefault(bucket_of(encoded), set()).add(encoded)
        return models
