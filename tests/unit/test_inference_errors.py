"""How Triton's errors are classified: retried (the server) or dead-lettered (the record)."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from streams.errors import RejectedInference, RetryableInference
from streams.inference import classify


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
