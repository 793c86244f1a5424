"""The worker's Triton client: one gRPC aio channel per worker, batched calls, classified errors.

The channel is created lazily on first use, inside the running event loop: a grpc.aio channel
is bound to the loop it was made on, and Faust's loop does not exist yet at import time.
Errors are mapped onto our hierarchy: UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED are
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

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from streams.errors import InferenceError, RejectedInference, RetryableInference
from streams.settings import Settings
from streams.text import TextTokenizer

log = logging.getLogger("streams.inference")

RETRYABLE = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "UNKNOWN", "NOT_FOUND"}
)
TEXT_OUTPUTS = ("sentiment_probs", "intent_probs", "embedding")
REC_OUTPUTS = ("top_items", "top_scores")


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


@dataclass(frozen=True)
class Recommendations:
    items: np.ndarray  # int64 [batch, k], raw product ids
    scores: np.ndarray  # float32 [batch, k]


class TritonModels:
    """Typed calls to the models the scorer serves."""

    def __init__(self, settings: Settings, tokenizer: TextTokenizer) -> None:
        self._settings = settings
        self._tokenizer = tokenizer
        self._client: InferenceServerClient | None = None
        self.calls = 0

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
        out = await self._infer(self._settings.text_model, inputs, TEXT_OUTPUTS, deadline_s)
        sentiment = out["sentiment_probs"]
        return TextScores(
            p_positive=sentiment[:, 1],
            intent_probs=out["intent_probs"],
            embedding=out["embedding"],
            truncated=batch.truncated,
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
        out = await self._infer(
            self._settings.recommender_model, [_input("item_ids", ids)], REC_OUTPUTS, deadline_s
        )
        return Recommendations(items=out["top_items"], scores=out["top_scores"])

    async def _infer(
        self,
        model: str,
        inputs: list[InferInput],
        outputs: Sequence[str],
        deadline_s: float | None,
    ) -> dict[str, np.ndarray]:
        """One inference with retries. `deadline_s` (a time.monotonic() value) bounds the whole call:
        the bid path passes its auction deadline, the text paths the retry budget."""
        requested = [InferRequestedOutput(name) for name in outputs]
        started = time.monotonic()
        give_up = deadline_s if deadline_s is not None else started + self._settings.triton_retry_max_s
        backoff = 0.1
        attempt = 0
        while True:
            attempt += 1
            remaining = give_up - time.monotonic()
            timeout = min(self._settings.triton_timeout_s, max(remaining, 0.001))
            try:
                self.calls += 1
                result = await self._get_client().infer(
                    model,
                    inputs,
                    outputs=requested,
                    client_timeout=timeout,
                    # the same deadline for Triton's queue policy: a request this client gave up on
                    # is dropped from the queue instead of being computed for nobody
                    timeout=max(1, int(timeout * 1_000_000)),
                )
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
            return {name: np.asarray(result.as_numpy(name)) for name in outputs}


def _input(name: str, array: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(array.shape), "INT64")
    tensor.set_data_from_numpy(array)
    return tensor
