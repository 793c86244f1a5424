"""The publisher: a batch's outcomes are sent concurrently across keys, in order within a key, and
`publish` returns only once Kafka has acknowledged every one."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from streams.dlq import DeadLetter
from streams.handlers.common import Output
from streams.publisher import Publisher


class Sink:
    """A topic whose sends can be made to wait for one another, and whose acks come when told."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes | None]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.gates: dict[bytes | None, asyncio.Event] = {}
        self.fail = False
        self._changed = asyncio.Condition()

    async def until(self, sent: int = 0, acks: int = 0) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(self.sent) >= sent and len(self.acks) >= acks)

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, headers: Any = None) -> Any:
        if key in self.gates:
            await self.gates[key].wait()
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


async def test_keys_are_sent_concurrently_and_each_key_in_order() -> None:
    sink = Sink()
    sink.gates[b"a"] = asyncio.Event()  # a's send waits until b has been sent
    stats: Counter[str] = Counter()
    publishing = asyncio.ensure_future(
        Publisher({"replies": sink}, stats).publish([out("a", 1), out("b", 2), out("a", 3), out("b", 4)])
    )
    await sink.until(sent=2)
    assert sink.sent == [(b"b", b"2"), (b"b", b"4")]  # b did not wait for a
    sink.gates[b"a"].set()
    await sink.until(acks=4)
    for ack in sink.acks:
        ack.set_result(None)
    await asyncio.wait_for(publishing, 1)
    assert [v for k, v in sink.sent if k == b"a"] == [b"1", b"3"]
    assert stats == Counter({"out:replies": 4})


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
