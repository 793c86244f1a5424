"""Types shared by the handlers, and the batch-inference helper that isolates bad requests."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel

from streams.dlq import DeadLetter, RecordMeta, dead_letter
from streams.errors import BadInput, Reason, RejectedInference
from streams.inference import Recommendations, TextScores
from streams.labels import ModelVersion, TextLabels
from streams.replies import ReplyIndex
from streams.schemas.common import SourceRef
from streams.serde import encode
from streams.settings import Settings

log = logging.getLogger("streams.handlers")

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True)
class Record(Generic[M]):
    meta: RecordMeta
    raw: bytes | None
    value: M

    @property
    def source(self) -> SourceRef:
        return SourceRef(topic=self.meta.topic, partition=self.meta.partition, offset=self.meta.offset)


@dataclass(frozen=True)
class Output:
    """One record to send. `headers` travel with it (a bid's answer to the HTTP gateway carries
    the gateway's request/reply headers, `streams.replyto`); None sends none."""

    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, bytes]] | None = None

    @classmethod
    def of(
        cls, topic: str, key: str, model: BaseModel, headers: list[tuple[str, bytes]] | None = None
    ) -> Output:
        return cls(topic=topic, key=key, value=encode(model), headers=headers)


Outcome = Output | DeadLetter


class Models(Protocol):
    async def score_texts(self, texts: Sequence[str], *, deadline_s: float | None = None) -> TextScores: ...

    async def recommend(
        self, histories: Sequence[Sequence[int]], *, deadline_s: float | None = None
    ) -> Recommendations: ...


@dataclass
class Context:
    """What a handler may use: settings, the models, per-user state, a clock.

    The clock has two faces and nothing else in a handler reads time: `now` is the wall clock
    (UTC), for what is stamped or dated (output `ts`, the bidder's day and pacing line, the
    event-time skew check); `monotonic` is in seconds, for elapsed time and deadlines, the same
    clock as the `deadline_s` the models take (`time.monotonic` in production). Tests replace both.
    """

    settings: Settings
    models: Models
    profiles: MutableMapping[str, Any]
    replies: ReplyIndex
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic

    def neutral_band(self, labels: TextLabels) -> tuple[float, float]:
        """The settings' band when set (an operator's override), else the one calibrated with
        the model version that answered (its labels come with its scores)."""
        return self.settings.neutral_band or labels.neutral_band


@dataclass(frozen=True)
class TextRow:
    """One text's share of an encoder pass."""

    p_positive: float
    intent_probs: np.ndarray
    embedding: np.ndarray
    model: ModelVersion  # the version that scored it
    labels: TextLabels  # that version's labels


def _text_row(scores: TextScores, i: int) -> TextRow:
    return TextRow(
        float(scores.p_positive[i]), scores.intent_probs[i], scores.embedding[i], scores.model, scores.labels
    )


async def score_texts(
    records: Sequence[Record[Any]], ctx: Context
) -> tuple[list[tuple[Record[Any], TextRow]], list[Outcome]]:
    """One encoder pass over the records' `text`; a record the server rejects becomes a dead letter."""
    results = await per_item(
        [r.value.text for r in records], lambda texts: ctx.models.score_texts(texts), _text_row
    )
    scored: list[tuple[Record[Any], TextRow]] = []
    dead: list[Outcome] = []
    for record, result in zip(records, results, strict=True):
        if isinstance(result, BadInput):
            dlq = ctx.settings.topics.dlq(record.meta.topic)
            dead.append(dead_letter(record.meta, record.raw, result, stage="inference", dlq_topic=dlq))
        else:
            scored.append((record, result))
    return scored, dead


async def per_item(
    items: Sequence[Any], call: Callable[[Sequence[Any]], Awaitable[R]], split: Callable[[R, int], Any]
) -> list[Any | BadInput]:
    """Run `call` on the whole batch; if the server rejects it, retry item by item so one bad
    request costs only itself (a dead letter) and not its neighbours."""
    try:
        result = await call(items)
        return [split(result, i) for i in range(len(items))]
    except RejectedInference as exc:
        if len(items) == 1:
            return [BadInput(Reason.INFERENCE_REJECTED, str(exc))]
        log.warning("batch of %d rejected (%s); isolating the bad items", len(items), exc.status)
    out: list[Any | BadInput] = []
    for item in items:
        try:
            out.append(split(await call([item]), 0))
        except RejectedInference as exc:
            out.append(BadInput(Reason.INFERENCE_REJECTED, str(exc)))
    return out
