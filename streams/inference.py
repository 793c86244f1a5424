"""The worker's Triton client: one gRPC aio channel per worker, batched calls, classified errors.

The channel is created lazily on first use, inside the running event loop: a grpc.aio channel
is bound to the loop it was made on, and Faust's loop does not exist yet at import time.
Every answer names the model version that produced it (Triton's `model_version`): the scores
carry it, and the first answer from a version the worker has not seen fetches that version's
card from the served config (streams.labels) once, so labels, neutral band and output names
always match the version that answered, through a version swap too, with no extra call per
batch. Errors are mapped onto our hierarchy: UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED are
retried with capped exponential backoff until `triton_retry_max_s`, and so is NOT_FOUND: the
models are fixed by the settings and checked at start, so "unknown model" means Triton is
loading or unloading them (a restart, a model reload), never a bad record. Anything else means
the request itself is bad and is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput, InferResult
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from streams.errors import InferenceError, RejectedInference, RetryableInference
from streams.labels import ModelVersion, TextLabels, text_labels_of, version_card
from streams.settings import Settings
from streams.text import TextTokenizer

log = logging.getLogger("streams.inference")

RETRYABLE = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "UNKNOWN", "NOT_FOUND"}
)
REC_OUTPUTS = ("top_items", "top_scores")  # when a recommender card names no outputs
# How long the gRPC deadline outlasts the worker's own (see TritonModels._call): Triton
# 2.51's gRPC frontend can crash when a client cancels a request as it completes
# (triton-inference-server/server#7368, fixed in 24.12), so deadlines are not cancellations.
ABANDON_GRACE_S = 5.0


def classify(model: str, exc: InferenceServerException) -> InferenceError:
    status = (exc.status() or "UNKNOWN").removeprefix("StatusCode.")
    detail = exc.message() or str(exc)
    cls = RetryableInference if status in RETRYABLE else RejectedInference
    return cls(model, status, detail)


@dataclass(frozen=True)
class TextScores:
    """One encoder pass over a batch: rows align with the input texts."""

    p_positive: np.ndarray  # [batch]
    intent_probs: np.ndarray  # [batch, n_intents]
    embedding: np.ndarray  # [batch, 384], L2-normalised
    truncated: list[bool]
    model: ModelVersion  # the version that answered
    labels: TextLabels  # that version's labels, from its card


@dataclass(frozen=True)
class Recommendations:
    items: np.ndarray  # int64 [batch, k], raw product ids
    scores: np.ndarray  # float32 [batch, k]
    model: ModelVersion


@dataclass(frozen=True)
class Answer:
    """One inference's outputs and the version that produced them."""

    outputs: dict[str, np.ndarray]
    model: ModelVersion


class TritonModels:
    """Typed calls to the models the scorer serves."""

    def __init__(self, settings: Settings, tokenizer: TextTokenizer) -> None:
        self._settings = settings
        self._tokenizer = tokenizer
        self._client: InferenceServerClient | None = None
        self._cards: dict[ModelVersion, dict[str, Any]] = {}
        self._text_labels: dict[ModelVersion, TextLabels] = {}
        self.calls = 0
        self.abandoned = 0  # requests the worker stopped waiting for (see _call)

    def _get_client(self) -> InferenceServerClient:
        if self._client is None:
            self._client = InferenceServerClient(url=self._settings.triton_grpc_url)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def wait_ready(self, within_s: float) -> None:
        """Block until every model the scorer uses is ready (or raise RetryableInference)."""
        models = (self._settings.text_model, self._settings.recommender_model)
        deadline = time.monotonic() + within_s
        while True:
            pending = []
            for model in models:
                try:
                    ready = await self._get_client().is_model_ready(model)
                except InferenceServerException:
                    ready = False
                if not ready:
                    pending.append(model)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RetryableInference(",".join(pending), "UNAVAILABLE", f"not ready after {within_s:.0f}s")
            await asyncio.sleep(0.5)

    async def score_texts(self, texts: Sequence[str], *, deadline_s: float | None = None) -> TextScores:
        batch = self._tokenizer.encode(texts)
        inputs = [_input("input_ids", batch.input_ids), _input("attention_mask", batch.attention_mask)]
        answer = await self._infer(self._settings.text_model, inputs, deadline_s)
        labels = self._text_labels[answer.model]
        sentiment, intents, embedding = (answer.outputs[name] for name in labels.outputs)
        return TextScores(
            p_positive=sentiment[:, 1],
            intent_probs=intents,
            embedding=embedding,
            truncated=batch.truncated,
            model=answer.model,
            labels=labels,
        )

    async def recommend(
        self, histories: Sequence[Sequence[int]], *, deadline_s: float | None = None
    ) -> Recommendations:
        """Top items for each history (raw product ids, oldest first). Empty histories are allowed."""
        width = self._settings.recent_items  # fixed: one shape, so Triton can merge requests
        ids = np.zeros((len(histories), width), dtype=np.int64)
        for row, hist in enumerate(histories):
            tail = list(hist)[-width:]
            if tail:
                ids[row, width - len(tail) :] = tail  # left-pad: most recent item last
        answer = await self._infer(self._settings.recommender_model, [_input("item_ids", ids)], deadline_s)
        names = self._cards[answer.model].get("spec", {}).get("outputs", {})
        items, scores = names.get("items", REC_OUTPUTS[0]), names.get("scores", REC_OUTPUTS[1])
        return Recommendations(items=answer.outputs[items], scores=answer.outputs[scores], model=answer.model)

    async def _learn(self, model: ModelVersion) -> None:
        """Fetch the card of a version seen for the first time (one config read per version)."""
        config = await self._get_client().get_model_config(model.name, str(model.version), as_json=True)
        card = version_card(config, model.version)
        if model.name == self._settings.text_model:
            self._text_labels[model] = text_labels_of(config, model.version)
        self._cards[model] = card
        log.info(
            "%s version %d: %s (%s)",
            model.name,
            model.version,
            card.get("training", "-"),
            card.get("built_at", "-"),
        )

    async def _infer(
        self,
        model: str,
        inputs: list[InferInput],
        deadline_s: float | None,
    ) -> Answer:
        """One inference with retries. `deadline_s` (a time.monotonic() value) bounds the whole call:
        the bid path passes its auction deadline, the text paths the retry budget. Every output
        is requested: the answering version's card says which is which."""
        requested: list[InferRequestedOutput] = []
        started = time.monotonic()
        give_up = deadline_s if deadline_s is not None else started + self._settings.triton_retry_max_s
        backoff = 0.1
        attempt = 0
        while True:
            attempt += 1
            remaining = give_up - time.monotonic()
            timeout = min(self._settings.triton_timeout_s, max(remaining, 0.001))
            try:
                result = await self._call(model, inputs, requested, wait_s=timeout)
                served = ModelVersion(model, int(result.get_response().model_version))
                if served not in self._cards:
                    await self._learn(served)
            except InferenceServerException as exc:
                err = classify(model, exc)
                if isinstance(err, RejectedInference):
                    raise err from exc
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    log.error(
                        "%s unavailable after %d attempts in %.1fs: %s",
                        model,
                        attempt,
                        time.monotonic() - started,
                        err,
                    )
                    raise err from exc
                log.warning(
                    "%s attempt %d failed (%s); retrying in %.2fs",
                    model,
                    attempt,
                    err.status,
                    min(backoff, remaining),
                )
                await asyncio.sleep(min(backoff, remaining))
                backoff = min(backoff * 2, 2.0)
                continue
            names = [o.name for o in result.get_response().outputs]
            return Answer({name: np.asarray(result.as_numpy(name)) for name in names}, served)

    async def _call(
        self, model: str, inputs: list[InferInput], requested: list[InferRequestedOutput], wait_s: float
    ) -> InferResult:
        """One request that ends for the worker after `wait_s` seconds, never by cancelling it.

        Triton's queue policy gets the same deadline (microseconds) and drops a request still
        queued then, so nothing is computed for nobody. The gRPC deadline is ABANDON_GRACE_S
        later and only bounds a server that stopped answering: a cancellation racing Triton's
        own answer can crash Triton 2.51's gRPC frontend (SIGSEGV; seen here under overload)."""
        self.calls += 1
        call = asyncio.ensure_future(
            self._get_client().infer(
                model,
                inputs,
                outputs=requested,
                client_timeout=wait_s + ABANDON_GRACE_S,
                timeout=max(1, int(wait_s * 1_000_000)),
            )
        )
        try:
            return await asyncio.wait_for(asyncio.shield(call), wait_s)
        except TimeoutError:
            self.abandoned += 1
            raise InferenceServerException(
                f"no answer within {wait_s:.3f}s (left to Triton's queue timeout)",
                status="StatusCode.DEADLINE_EXCEEDED",
            ) from None
        finally:
            if not call.done():
                call.add_done_callback(_settled)


def _settled(call: asyncio.Future[InferResult]) -> None:
    """Done callback of an abandoned request: its outcome is nobody's, but it is retrieved."""
    if not call.cancelled():
        call.exception()


def _input(name: str, array: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(array.shape), "INT64")
    tensor.set_data_from_numpy(array)
    return tensor
