"""How Triton's errors are classified (retried: the server; dead-lettered: the record), and retried."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from streams.errors import RejectedInference, RetryableInference
from streams.inference import TritonModels, classify
from streams.settings import Settings
from streams.text import TextTokenizer


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


class QueueFullOnce:
    """A stand-in for the gRPC client: rejects the first request as Triton does when its queue
    is full, then answers; records what each request asked for."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if len(self.calls) == 1:
            raise InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE")
        rows = inputs[0].shape()[0]
        return SimpleNamespace(
            as_numpy=lambda name: np.zeros((rows, 20), np.int64 if name == "top_items" else np.float32)
        )


def test_a_full_queue_is_retried_and_every_request_carries_its_deadline_to_triton() -> None:
    settings = Settings(triton_timeout_s=0.5, triton_retry_max_s=5)
    models = TritonModels(settings, cast(TextTokenizer, None))
    fake = QueueFullOnce()
    models._client = cast(InferenceServerClient, fake)
    out = asyncio.run(models.recommend([[1, 2, 3], []]))
    assert out.items.shape == (2, 20)
    assert len(fake.calls) == 2
    for call in fake.calls:
        # the client's deadline and the server's queue timeout (microseconds) are the same one
        assert abs(call["timeout"] - call["client_timeout"] * 1_000_000) <= 1
        assert 0 < call["client_timeout"] <= 0.5
