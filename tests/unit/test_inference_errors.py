"""How Triton's errors are classified (retried: the server; dead-lettered: the record), and retried."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from streams.errors import RejectedInference, RetryableInference
from streams.inference import ABANDON_GRACE_S, TritonModels, classify
from streams.settings import Settings
from streams.text import TextTokenizer
from tests.fakes import ConfigReads, recommender_answer


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", RetryableInference),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", RetryableInference),
        ("StatusCode.RESOURCE_EXHAUSTED", "Exceeds maximum queue size", RetryableInference),
        # seen while Triton unloads its models on the way down: the server, not the record
        (
            "StatusCode.NOT_FOUND",
            "Request for unknown model: 'text_encoder' has no available versions",
            RetryableInference,
        ),
        ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'input_ids'", RejectedInference),
    ],
)
def test_server_trouble_is_retried_and_bad_requests_are_not(status: str, message: str, kind: type) -> None:
    err = classify("text_encoder", InferenceServerException(message, status=status))
    assert isinstance(err, kind) and err.status == status.removeprefix("StatusCode.")


class QueueFullOnce(ConfigReads):
    """A stand-in for the gRPC client: rejects the first request as Triton does when its queue
    is full, then answers; records what each request asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    async def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if len(self.calls) == 1:
            raise InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE")
        return recommender_answer(inputs[0].shape()[0])


def test_a_full_queue_is_retried_and_every_request_carries_its_deadline_to_triton() -> None:
    settings = Settings(triton_timeout_s=0.5, triton_retry_max_s=5)
    models = TritonModels(settings, cast(TextTokenizer, None))
    fake = QueueFullOnce()
    models._client = cast(InferenceServerClient, fake)
    out = asyncio.run(models.recommend([[1, 2, 3], []]))
    assert out.items.shape == (2, 20)
    assert len(fake.calls) == 2
    for call in fake.calls:
        # Triton's queue timeout (microseconds) is the worker's deadline; the gRPC deadline is later
        assert 0 < call["timeout"] <= 500_000
        assert call["client_timeout"] == pytest.approx(call["timeout"] / 1_000_000 + ABANDON_GRACE_S)


class SlowTriton:
    """A stand-in for the gRPC client whose answer comes after the worker's deadline."""

    def __init__(self, answer_after_s: float) -> None:
        self.answer_after_s = answer_after_s
        self.started = 0
        self.finished = 0
        self.cancelled = 0

    async def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> Any:
        self.started += 1
        try:
            await asyncio.sleep(self.answer_after_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        raise InferenceServerException("Request timeout expired", status="StatusCode.UNAVAILABLE")


def test_a_deadline_ends_the_wait_without_cancelling_the_request() -> None:
    """Cancelling a request as Triton answers it can crash Triton 2.51's gRPC frontend: the
    worker stops waiting at its deadline and leaves the request to Triton's queue timeout."""
    settings = Settings(triton_timeout_s=0.5, triton_retry_max_s=5)
    models = TritonModels(settings, cast(TextTokenizer, None))
    fake = SlowTriton(answer_after_s=0.3)
    models._client = cast(InferenceServerClient, fake)

    async def run() -> float:
        started = time.monotonic()
        with pytest.raises(RetryableInference) as caught:
            await models.recommend([[1]], deadline_s=started + 0.1)
        assert caught.value.status == "DEADLINE_EXCEEDED"
        waited = time.monotonic() - started
        await asyncio.sleep(0.4)  # the abandoned request settles on its own
        return waited

    waited = asyncio.run(run())
    assert waited < 0.25, f"the worker waited {waited:.2f}s past a 0.1 s deadline"
    assert (fake.started, fake.finished, fake.cancelled) == (1, 1, 0)
    assert models.abandoned == 1
