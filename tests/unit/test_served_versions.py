"""The worker side of model versions: labels from the version that answered, reply embeddings
per version, outputs that name it, and brand windows that say which versions scored them."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import orjson
from tritonclient.grpc.aio import InferenceServerClient

from producers.events import EventFactory
from streams.handlers.chat import handle_chat
from streams.handlers.common import Output
from streams.handlers.trends import handle_brand_posts
from streams.inference import TritonModels
from streams.labels import ModelVersion
from streams.replies import ReplyIndex, VersionChanged
from streams.schemas import BrandWindow, ChatMessage, CsReply, ModelRef, ScoredPost, SentimentLabel
from streams.schemas.common import SourceRef
from streams.settings import Settings
from streams.text import TextTokenizer
from tests.fakes import LABELS, ConfigReads, FakeModels, triton_answer
from tests.unit.test_handlers import CATALOGUE, make_ctx, records

SETTINGS = Settings()


class Swapping(ConfigReads):
    """A text encoder stand-in that answers with version `serving` (a test changes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.serving = 1

    async def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> Any:
        rows = inputs[0].shape()[0]
        arrays = {
            "sentiment_probs": np.tile(np.array([0.4, 0.6], np.float32), (rows, 1)),
            "intent_probs": np.full((rows, 13), 1 / 13, np.float32),
            "embedding": np.ones((rows, 384), np.float32),
        }
        return triton_answer(arrays, self.serving)


def test_labels_come_from_the_card_of_the_version_that_answered_once_per_version() -> None:
    models = TritonModels(SETTINGS, TextTokenizer(SETTINGS.tokenizer_path, SETTINGS.max_seq_len))
    fake = Swapping()
    models._client = cast(InferenceServerClient, fake)

    async def run() -> list[ModelVersion]:
        seen = []
        for serving in (1, 1, 2, 2, 1):
            fake.serving = serving
            scores = await models.score_texts(["where is my order"])
            assert scores.labels.intents == LABELS.intents
            assert float(scores.p_positive[0]) == np.float32(0.6)  # column 1 of the card's sentiment output
            seen.append(scores.model)
        return seen

    seen = asyncio.run(run())
    assert [m.version for m in seen] == [1, 1, 2, 2, 1]
    assert fake.config_reads == [("text_encoder", "1"), ("text_encoder", "2")]  # the hot path reads none


def test_reply_embeddings_are_recomputed_for_a_new_version_and_a_rollback() -> None:
    models = FakeModels()
    index = ReplyIndex(CATALOGUE)
    v1, v2 = ModelVersion("text_encoder", 1), ModelVersion("text_encoder", 2)

    async def run() -> None:
        await index.embeddings(models, v1)
        await index.embeddings(models, v1)  # cached
        models.text_model = v2
        await index.embeddings(models, v2)  # the new version's, which replace version 1's
        try:
            await index.embeddings(models, v1)  # a late version-1 batch, while version 2 answers
        except VersionChanged as exc:
            assert (exc.wanted, exc.answered) == (v1, v2)
        else:
            raise AssertionError("embeddings of version 1 came from version 2")
        models.text_model = v1  # the rollback
        await index.embeddings(models, v1)

    asyncio.run(run())
    assert index.computed == {v1: 2, v2: 1}


def test_a_chat_batch_scored_across_a_swap_is_scored_again_by_the_new_version() -> None:
    """The batch is answered by version 1, the reply embeddings by version 2 (the swap landed
    between the calls): the batch is scored again, and replies name version 2 and use its band."""
    v2 = ModelVersion("text_encoder", 2)
    models = FakeModels()
    v2_labels = dataclasses.replace(LABELS, neutral_band=(0.55, 0.95))  # p = 0.5 reads negative in v2
    original = models.score_texts
    calls = 0

    async def swap_after_first_call(texts: Any, *, deadline_s: float | None = None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            models.text_model, models.labels = v2, v2_labels
        return await original(texts, deadline_s=deadline_s)

    models.score_texts = swap_after_first_call  # type: ignore[method-assign]
    ctx = make_ctx(models)
    msgs = [EventFactory(seed=4).chat(text="a plain question").value]
    outcomes = asyncio.run(handle_chat(records(msgs, ChatMessage, "chat"), ctx))
    (reply,) = [CsReply.model_validate(orjson.loads(o.value)) for o in outcomes if isinstance(o, Output)]
    assert reply.model == ModelRef(name="text_encoder", version=2)
    assert reply.sentiment.label is SentimentLabel.NEGATIVE  # p_positive 0.5 < v2's low edge 0.55
    assert ctx.replies.computed == {v2: 1}


def test_a_brand_window_names_the_versions_that_scored_its_posts() -> None:
    ctx = make_ctx()
    start = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    size = timedelta(seconds=SETTINGS.brand_window_s)
    posts = []
    for i, (version, ts) in enumerate([(1, start), (2, start), (2, start), (1, start + size)]):
        post = ScoredPost(
            post_id=f"p{i}",
            brand="freshcart",
            user_id="u1",
            ts=ts,
            p_positive=0.9,
            sentiment=SentimentLabel.POSITIVE,
            source=SourceRef(topic="social", partition=0, offset=i),
            model=ModelRef(name="text_encoder", version=version),
        )
        posts.append(post.model_dump_json().encode())
    windows: dict[str, Any] = {}
    outcomes = asyncio.run(handle_brand_posts(records(posts, ScoredPost, "social-scored"), ctx, windows))
    (window,) = [BrandWindow.model_validate(orjson.loads(o.value)) for o in outcomes if isinstance(o, Output)]
    assert window.volume == 3
    assert window.model == ModelRef(name="text_encoder", version=2)  # scored two of the three
    assert [(m.version, m.posts) for m in window.models] == [(2, 2), (1, 1)]
