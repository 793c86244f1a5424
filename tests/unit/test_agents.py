"""The batch agent on a real Faust app in memory (tests/unit/faust_memory.py): inputs are
acknowledged only after their outputs are, and a failed batch never is."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from faust.types import TP
from pydantic import BaseModel

from streams.agents import Activity, AgentParts, batch_agent
from streams.handlers.common import Context, Outcome, Output, Record
from streams.offsets import Partition, SkipGuard
from streams.pipeline import Route
from streams.publisher import Publisher
from streams.replies import Catalogue, Reply, ReplyIndex
from tests.fakes import FakeModels
from tests.unit.faust_memory import deliver, eventually, message, worker_app, worker_settings


class Ping(BaseModel):
    schema_version: int = 1
    n: int


async def echo(records: Sequence[Record[Ping]], ctx: Context) -> list[Outcome]:
    return [Output.of("pongs", str(r.value.n), r.value) for r in records]


class Sink:
    def __init__(self) -> None:
        self.acks: list[asyncio.Future[None]] = []
        self.refuse: Exception | None = None
        self._changed = asyncio.Condition()

    async def until_sent(self, n: int) -> None:
        async with asyncio.timeout(10), self._changed:
            await self._changed.wait_for(lambda: len(self.acks) >= n)

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, headers: Any = None) -> Any:
        if self.refuse is not None:
            raise self.refuse
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        async with self._changed:
            self._changed.notify_all()
        return ack


class Worker:
    """One real app with one batch agent on `pings`, a recording sink for `pongs`."""

    def __init__(self, tmp_path: Path) -> None:
        settings = worker_settings(tmp_path)
        self.app = worker_app(tmp_path)
        self.sink = Sink()
        self.stopped: list[BaseException] = []
        self.stopping = asyncio.Event()
        self.activity = Activity()

        async def starts(partitions: list[Partition]) -> dict[Partition, int | None]:
            return dict.fromkeys(partitions, 0)

        ctx = Context(
            settings=settings,
            models=FakeModels(),
            profiles={},
            replies=ReplyIndex(Catalogue(replies=[Reply(id="greet", intent="greeting", text="Hello!")])),
        )
        self.guard = SkipGuard(starts, lambda: [("pings", 0)], _no_exit)
        parts = AgentParts(
            ctx,
            self.guard,
            Publisher({"pongs": self.sink}, Counter()),
            self.activity,
            Counter(),
            self.stop,
        )
        topic = self.app.topic(
            "pings", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
        self.agent = self.app.agent(topic, name="pings-agent")(
            batch_agent(Route("pings", Ping, echo), parts, batch_size=8, within_s=0.05)
        )
        self.records = [message(self.app, "pings", 0, n, orjson.dumps({"n": n})) for n in range(3)]

    async def __aenter__(self) -> Worker:
        await self.agent.start()
        await deliver(self.app, self.records)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.agent.stop()

    def stop(self, why: BaseException) -> None:
        self.stopped.append(why)
        self.stopping.set()

    def acked_offsets(self) -> list[int]:
        acked: Any = self.app.consumer._acked  # what the next commit may take
        return list(acked.get(TP("pings", 0), []))


def _no_exit() -> Any:
    raise AssertionError("the skip guard fired")


async def test_inputs_are_acked_after_their_outputs_are(tmp_path: Path) -> None:
    async with Worker(tmp_path) as worker:
        await worker.sink.until_sent(3)  # the agent now waits for Kafka's acks
        assert worker.acked_offsets() == [] and "pings" in worker.activity.busy
        for ack in worker.sink.acks:
            ack.set_result(None)
        await eventually(lambda: worker.acked_offsets() == [0, 1, 2])
        assert worker.guard.expected == {("pings", 0): 3}
        assert "pings" not in worker.activity.busy


async def test_a_failed_batch_stops_the_worker_and_is_never_acked(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    worker.sink.refuse = RuntimeError("Kafka refused")
    async with worker:
        await asyncio.wait_for(worker.stopping.wait(), 10)
    assert [str(e) for e in worker.stopped] == ["Kafka refused"]
    assert worker.acked_offsets() == []  # also after take_events' own acks, when the agent stopped
    assert not any(m.acked for m in worker.records)
