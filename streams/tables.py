"""The worker's changelog-backed tables, seen by the handlers as plain `MutableMapping[str, Any]`.

Keys are stored as the UTF-8 bytes of the key of the records that update them (user id, brand),
and each key's changelog record goes to the partition those records arrive on, so a worker that
takes over a partition recovers exactly the state its records need. The bidder's ledger names
its partition in the key instead (`p<P>/...`, see streams.pacing).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import murmur2
from faust.types import AppT, TableT

from streams.faust_compat import placed_table
from streams.pacing import partition_of
from streams.settings import Settings


def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as in the Java client, aiokafka and librdkafka's
    murmur2_random): the partition that records with this key are produced to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class StrKeyed(MutableMapping[str, Any]):
    """A bytes-keyed table seen through str keys."""

    def __init__(self, table: TableT) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Any:
        return self._table[key.encode()]

    def __setitem__(self, key: str, value: Any) -> None:
        self._table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self._table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self._table)

    def __len__(self) -> int:
        return len(self._table)


@dataclass(frozen=True)
class Tables:
    profiles: StrKeyed  # per user, keyed like the inputs (user id)
    brand_windows: StrKeyed  # per brand, keyed like social-scored (brand)
    ledger: StrKeyed  # the bidder's spend, pacing and frequency caps (streams.pacing)


def make_tables(app: AppT, settings: Settings) -> Tables:
    partitions = settings.partitions

    def by_key(name: str) -> StrKeyed:
        return StrKeyed(placed_table(app, name, partitions, lambda key: key_partition(key, partitions)))

    brand_windows = by_key("brand-windows")
    ledger = StrKeyed(placed_table(app, "bid-ledger", partitions, lambda key: partition_of(key.decode())))
    return Tables(profiles=by_key("profiles"), brand_windows=brand_windows, ledger=ledger)
