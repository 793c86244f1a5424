"""The real tritonserver serves the built CPU repository and gives what onnxruntime gives in process.

Runs the whole chain this part of the project owns: the build (skipped when up to date), the
launcher (backend wiring, loopback ports, readiness of every model), the python-backend model
(padding of merged requests, per-request errors) and a clean stop of the whole process group.
Requests go through `tritonclient.grpc.aio` as the worker sends them, with the client created
inside each test's running loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as grpcclient
from tokenizers import Tokenizer
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

import triton_models
from stack.triton import TritonServer
from triton_models.build import build, installed_training

pytestmark = pytest.mark.integration

ATOL = 1e-4
TEXT_OUTPUTS = ("sentiment_probs", "intent_probs", "embedding")
REC_OUTPUTS = ("top_items", "top_scores")
SENTENCES = [
    "Where is my order? It was supposed to arrive yesterday.",
    "Thanks so much, the delivery was super quick and the shoes fit perfectly!",
    "I want to return this jacket and get a refund.",
    "hello",
    "Your app keeps logging me out and I was charged twice for order 5512. Let me talk to a human.",
    "Is there a promo code for the weekend sale?",
]


@pytest.fixture(scope="module")
def repository() -> Path:
    # Seconds when the stamps say the artifacts are up to date; keeps the variant `make` built.
    build(profile="cpu", training=installed_training())
    return triton_models.CPU_REPOSITORY


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    triton = TritonServer(repository=repository, state_dir=tmp_path_factory.mktemp("triton-state"))
    triton.start(timeout=120)
    try:
        yield triton
    finally:
        triton.stop()


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(triton_models.minilm_path() / "tokenizer.json"))
    tok.no_padding()  # the file pads to 128 by default; the worker pads per batch
    tok.enable_truncation(max_length=int(triton_models.load_labels()["tokenizer"]["max_length"]))
    return tok


@pytest.fixture(scope="module")
def text_session() -> ort.InferenceSession:
    return ort.InferenceSession(
        str(triton_models.onnx_path("text_encoder")), providers=["CPUExecutionProvider"]
    )


@pytest.fixture(scope="module")
def rec_session() -> ort.InferenceSession:
    return ort.InferenceSession(
        str(triton_models.onnx_path("recommender")), providers=["CPUExecutionProvider"]
    )


def encode(tok: Tokenizer, texts: list[str], pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    encodings = tok.encode_batch(texts)
    length = max(pad_to or 0, *(len(e.ids) for e in encodings))
    ids = np.zeros((len(texts), length), dtype=np.int64)  # pad id 0, as labels.json says
    mask = np.zeros((len(texts), length), dtype=np.int64)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    return ids, mask


def infer_input(name: str, array: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(array.shape), "INT64")
    tensor.set_data_from_numpy(array)
    return tensor


async def infer_text(
    client: grpcclient.InferenceServerClient, ids: np.ndarray, mask: np.ndarray
) -> dict[str, np.ndarray]:
    result = await client.infer(
        "text_encoder",
        [infer_input("input_ids", ids), infer_input("attention_mask", mask)],
        outputs=[InferRequestedOutput(n) for n in TEXT_OUTPUTS],
        client_timeout=60,
    )
    return {n: result.as_numpy(n) for n in TEXT_OUTPUTS}


async def infer_rec(client: grpcclient.InferenceServerClient, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    result = await client.infer(
        "recommender",
        [infer_input("item_ids", item_ids)],
        outputs=[InferRequestedOutput(n) for n in REC_OUTPUTS],
        client_timeout=60,
    )
    return {n: result.as_numpy(n) for n in REC_OUTPUTS}


def assert_text_matches(
    got: dict[str, np.ndarray], session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray
):
    want = session.run(list(TEXT_OUTPUTS), {"input_ids": ids, "attention_mask": mask})
    for name, expected in zip(TEXT_OUTPUTS, want, strict=True):
        assert got[name].shape == expected.shape, name
        np.testing.assert_allclose(got[name], expected, atol=ATOL, rtol=0, err_msg=name)


def test_every_model_is_ready_on_loopback(server: TritonServer) -> None:
    assert server.model_names() == ["recommender", "text_encoder"]
    for url in (server.grpc_url, server.http_url):
        assert url.startswith("127.0.0.1:")
    log = server.log_path.read_text()
    assert "Started GRPCInferenceService at 127.0.0.1:" in log
    assert "Started Metrics Service at 127.0.0.1:" in log


async def test_text_encoder_matches_onnxruntime(
    server: TritonServer, tokenizer: Tokenizer, text_session: ort.InferenceSession
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        ids, mask = encode(tokenizer, SENTENCES)
        got = await infer_text(client, ids, mask)
    finally:
        await client.close()
    assert_text_matches(got, text_session, ids, mask)
    assert got["sentiment_probs"].shape == (len(SENTENCES), 2)
    assert got["intent_probs"].shape == (len(SENTENCES), 13)
    np.testing.assert_allclose(got["sentiment_probs"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got["intent_probs"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got["embedding"], axis=1), 1.0, atol=1e-5)
    # Padding must not leak into the pooled embedding: one sentence alone == in the padded batch.
    alone_ids, alone_mask = encode(tokenizer, SENTENCES[3:4])
    alone = text_session.run(["embedding"], {"input_ids": alone_ids, "attention_mask": alone_mask})[0]
    np.testing.assert_allclose(got["embedding"][3:4], alone, atol=ATOL, rtol=0)


async def test_concurrent_requests_of_different_lengths_are_merged(
    server: TritonServer, tokenizer: Tokenizer, text_session: ort.InferenceSession
) -> None:
    """Requests padded to different lengths, sent at once: Triton merges them into fewer executions
    of the python model, which pads them to the longest, and each answer equals its own ORT run."""
    requests = [
        encode(tokenizer, [text], pad_to=pad)
        for text, pad in zip(SENTENCES, (None, 24, 32, 64, None, 48), strict=True)
    ]
    requests.append(encode(tokenizer, SENTENCES[:3]))  # a request with batch 3
    requests.append(encode(tokenizer, SENTENCES[3:], pad_to=128))
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        before = (await client.get_inference_statistics("text_encoder")).model_stats[0]
        results = await asyncio.gather(*(infer_text(client, ids, mask) for ids, mask in requests))
        after = (await client.get_inference_statistics("text_encoder")).model_stats[0]
    finally:
        await client.close()
    for got, (ids, mask) in zip(results, requests, strict=True):
        assert_text_matches(got, text_session, ids, mask)
    executions = after.execution_count - before.execution_count
    inferences = after.inference_count - before.inference_count
    assert inferences == sum(ids.shape[0] for ids, _ in requests)
    assert executions < len(requests), (
        f"{len(requests)} requests ran in {executions} executions: nothing merged"
    )


async def test_one_bad_request_does_not_fail_the_others(
    server: TritonServer, tokenizer: Tokenizer, text_session: ort.InferenceSession
) -> None:
    """Bad requests sent among good ones get INVALID_ARGUMENT; the good ones still get answers.

    One passes every check but breaks onnxruntime (a token id outside the vocabulary: the merged
    run fails, the model reruns each request alone); one is caught before running (ids and mask
    of different lengths, which padding would otherwise hide).
    """
    good = [encode(tokenizer, [s]) for s in SENTENCES[:4]]
    oov_ids, oov_mask = encode(tokenizer, ["a token id far outside the vocabulary"])
    oov_ids[0, 2] = 10_000_000
    short_ids, short_mask = encode(tokenizer, ["the mask is shorter than the ids"])
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        calls = [infer_text(client, ids, mask) for ids, mask in good[:2]]
        calls.append(infer_text(client, oov_ids, oov_mask))
        calls.append(infer_text(client, short_ids, short_mask[:, :-2]))
        calls += [infer_text(client, ids, mask) for ids, mask in good[2:]]
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await client.close()
    errors = [results.pop(2), results.pop(2)]
    for error in errors:
        assert isinstance(error, InferenceServerException), error
        assert error.status() == "StatusCode.INVALID_ARGUMENT", error
    assert "must match" in str(errors[1])
    for got, (ids, mask) in zip(results, good, strict=True):
        assert isinstance(got, dict), got
        assert_text_matches(got, text_session, ids, mask)


def real_histories(n: int, width: int) -> np.ndarray:
    """Recent product ids of real Instacart users, most recent last, left-padded with 0."""
    from triton_models.recommender_fit import load_interactions, pad_histories

    data = load_interactions()
    users = np.unique(data.user)[:n]
    return pad_histories([data.product[data.user == u] for u in users], width)


async def test_recommender_matches_onnxruntime_and_ignores_unknown_ids(
    server: TritonServer, rec_session: ort.InferenceSession
) -> None:
    width = int(triton_models.load_recommender_spec()["max_history"])
    histories = real_histories(6, width)
    catalogue = set(
        int(i) for i in rec_session.run(["top_items"], {"item_ids": np.zeros((1, 1), np.int64)})[0][0]
    )
    known = histories[0][histories[0] > 0]
    assert catalogue  # popularity top list when nothing is known
    hostile = histories[0].copy()
    hostile[:3] = [3, 10**12, -5]  # 3: a valid-looking id absent from the sample; then out of range
    empty = np.zeros(width, dtype=np.int64)
    batch = np.vstack([histories, hostile, empty])
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        got = await infer_rec(client, batch)
        alone = await asyncio.gather(*(infer_rec(client, row[None, row > 0]) for row in histories[:3]))
    finally:
        await client.close()
    want_items, want_scores = rec_session.run(list(REC_OUTPUTS), {"item_ids": batch})
    assert got["top_items"].shape == (len(batch), 20) and got["top_items"].dtype == np.int64
    np.testing.assert_allclose(got["top_scores"], want_scores, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(got["top_items"][:, :10], want_items[:, :10])
    assert np.all(np.diff(got["top_scores"], axis=1) <= 0), "scores must come sorted"
    assert np.all(got["top_scores"].sum(axis=1) <= 1.0 + 1e-5), "softmax over the catalogue"
    # Unknown and out-of-range ids act as padding: same answer as the cleaned history.
    cleaned = histories[0].copy()
    cleaned[:3] = 0
    cleaned_scores = rec_session.run(["top_scores"], {"item_ids": cleaned[None, :]})[0]
    np.testing.assert_allclose(got["top_scores"][len(histories)], cleaned_scores[0], atol=1e-6, rtol=0)
    # Left padding does not change the answer (unpadded request == padded row).
    for row, single in enumerate(alone):
        np.testing.assert_allclose(single["top_scores"][0], got["top_scores"][row], atol=1e-6, rtol=0)
    # Repeat purchases dominate Instacart; the user's own items should rank.
    assert set(got["top_items"][0].tolist()) & set(known.tolist())


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_stop_ends_the_whole_process_group(repository: Path, tmp_path: Path) -> None:
    """A separate server: stopping it must take the python-backend stubs down with it."""
    triton = TritonServer(repository=repository, state_dir=tmp_path, http_port=0, grpc_port=0, metrics_port=0)
    started = time.monotonic()
    triton.start(timeout=120)
    try:
        ready_s = time.monotonic() - started
        pgid = triton.pid
        assert pgid is not None and os.getpgid(pgid) == pgid
        members = _group_members(pgid)
        # The server and one stub per model instance.
        assert len(members) >= 1 + len(triton.model_names()), members
        assert ready_s < 60
    finally:
        triton.stop()
    deadline = time.monotonic() + 10
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(pgid) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert not triton.pid_path.exists()


def test_a_model_that_cannot_load_fails_start_with_its_error(tmp_path: Path) -> None:
    """A broken repository must fail fast with the model's own error, and leave nothing running."""
    from stack.errors import StackError
    from triton_models.configs import write_cpu_repository

    repo = tmp_path / "repo"
    write_cpu_repository(repo, models=("recommender",))
    config = repo / "recommender" / "config.pbtxt"
    config.write_text(
        config.read_text().replace("triton_models/recommender/{version}/model.onnx", "missing/model.onnx")
    )
    triton = TritonServer(
        repository=repo, state_dir=tmp_path / "state", http_port=0, grpc_port=0, metrics_port=0
    )
    started = time.monotonic()
    with pytest.raises(StackError, match=r"missing/model\.onnx not found") as info:
        triton.start(timeout=60)
    assert time.monotonic() - started < 50, "an exited server must be reported at once, not at the timeout"
    assert "errors in triton.log" in str(info.value)
    assert not triton.running()
    pgid = triton.pid
    assert pgid is not None
    deadline = time.monotonic() + 10
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(pgid) == []
