"""The publisher: `publish` returns only once Kafka has acknowledged every outcome of the batch."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from streams.dlq import DeadLetter
from streams.handlers.common import Output
from streams.publisher import Publisher


class Sink:
    """A topic whose acks come when told."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes | None]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.fail = False
        self._changed = asyncio.Condition()

    async def until(self, sent: int = 0, acks: int = 0) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(self.sent) >= sent and len(self.acks) >= acks)

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, headers: Any = None) -> Any:
        if self.fail:
            raise RuntimeError("refused")
        self.sent.append((key, value))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        async with self._changed:
            self._changed.notify_all()
        return ack


def out(key: str, n: int) -> Output:
    return Output("replies", key, str(n).encode())


async def test_publish_returns_only_once_every_record_is_acknowledged() -> None:
    sink = Sink()
    publishing = asyncio.ensure_future(
        Publisher({"replies": sink}, Counter()).publish([out("a", 1), out("b", 2)])
    )
    await sink.until(acks=2)
    sink.acks[0].set_result(None)
    await asyncio.sleep(0)  # let publish see the first ack
    assert not publishing.done()
    sink.acks[1].set_result(None)
    await asyncio.wait_for(publishing, 1)


async def test_dead_letters_keep_their_key_and_headers() -> None:
    sink = Sink()
    letter = DeadLetter("chat.dlq", None, b"\xff", [("x-dlq-reason", b"not_utf8")])
    stats: Counter[str] = Counter()
    publishing = asyncio.ensure_future(Publisher({"chat.dlq": sink}, stats).publish([letter]))
    await sink.until(acks=1)
    sink.acks[0].set_result(None)
    await publishing
    assert sink.sent == [(None, b"\xff")] and stats == Counter({"dlq:chat.dlq": 1})


async def test_a_refused_send_fails_the_publish() -> None:
    sink = Sink()
    sink.fail = True
    with pytest.raises(RuntimeError, match="refused"):
        await Publisher({"replies": sink}, Counter()).publish([out("a", 1)])


async def test_a_failed_delivery_fails_the_publish() -> None:
    sink = Sink()
    publishing = asyncio.ensure_future(Publisher({"replies": sink}, Counter()).publish([out("a", 1)]))
    await sink.until(acks=1)
    sink.acks[0].set_exception(RuntimeError("not enough replicas"))
    with pytest.raises(RuntimeError, match="not enough replicas"):
        await publishing
