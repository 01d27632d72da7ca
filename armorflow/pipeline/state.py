"""How a profile's model is stored in the pipeline's changelog-backed table.

A model is split into its entries (a file rule, a syscall, ...), and the entries into a
fixed number of buckets by a stable hash; one table row holds one bucket. A batch
rewrites only the buckets it changed, so the changelog carries deltas rather than whole
models, and no row grows past ``1/BUCKETS`` of the model: a large model never becomes a
single message over the broker's size limit.

Row key: ``profile NUL bucket`` (the profile first, so that rows go to the profile's
partition, see :class:`armorflow.pipeline.worker.ProfileTable`). Row value: a JSON object
mapping each entry (as a JSON array) to its value.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Final

import orjson

from armorflow.model import BehaviourModel, EntryKey

BUCKETS: Final = 64


def _encode(entry: EntryKey) -> str:
    return orjson.dumps(list(entry)).decode()


def bucket_of(encoded_entry: str) -> int:
    return zlib.crc32(encoded_entry.encode()) % BUCKETS


def row_key(profile: str, bucket: int) -> bytes:
    return f"{profile}\x00{bucket:02d}".encode()


def row_profile(key: bytes) -> str:
    return key.partition(b"\x00")[0].decode()


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
            yield row_key(profile, bucket), orjson.dumps(row, option=orjson.OPT_SORT_KEYS)

    def load(self, rows: Iterable[tuple[bytes, bytes]]) -> dict[str, BehaviourModel]:
        """Rebuild the models (and this index) from stored rows."""
        models: dict[str, BehaviourModel] = {}
        for key, value in rows:
            profile = row_profile(key)
            model = models.setdefault(profile, BehaviourModel())
            buckets = self._index.setdefault(profile, {})
            row: dict[str, Any] = orjson.loads(value)
            for encoded, entry_value in row.items():
                entry = tuple(orjson.loads(encoded))
                model.apply_entry(entry, entry_value)
                buckets.setdefault(bucket_of(encoded), set()).add(encoded)
        return models
