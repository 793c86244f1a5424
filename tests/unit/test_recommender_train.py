"""The recommender's training path, end to end on a tiny slice of the Instacart sample.

A couple of optimiser steps on 25 users, then the ONNX export and its checks (onnxruntime vs
torch, unknown ids as padding, padding position and over-long histories ignored), so the code
that `python -m triton_models.build` runs for minutes stays tested in seconds. The split, the
metrics and the baselines are checked on hand-made cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from triton_models import RECOMMENDER
from triton_models import recommender_fit as rf
from triton_models import recommender_model as rm
from triton_models.build import _check_against_config

WIDTH = 50


@pytest.fixture
def torch_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One thread here (the build trains with two); leave torch's global state as it was."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    monkeypatch.setattr(rm, "THREADS", 1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def data() -> rf.Interactions:
    return rf.load_interactions()


@pytest.fixture(scope="module")
def tiny(data: rf.Interactions) -> rf.Split:
    users = np.unique(data.user)[:25]
    return rf.make_split(data.select(np.isin(data.user, users)), WIDTH)


def test_split_holds_out_the_last_two_orders(data: rf.Interactions) -> None:
    user = int(np.unique(data.user)[3])
    mine = data.select(data.user == user)
    split = rf.make_split(mine, WIDTH)
    last, before_last = mine.rank_from_end == 0, mine.rank_from_end == 1
    np.testing.assert_array_equal(split.test.targets[0], np.unique(mine.product[last]))
    np.testing.assert_array_equal(split.val.targets[0], np.unique(mine.product[before_last]))
    # The input is the last WIDTH products before the target order, most recent last.
    np.testing.assert_array_equal(split.test.inputs[0], mine.product[mine.rank_from_end > 0][-WIDTH:])
    np.testing.assert_array_equal(split.val.histories[0], mine.product[mine.rank_from_end > 1])
    # Training targets are every earlier order but the first; popularity counts only those orders.
    assert len(split.train) == int(mine.rank_from_end.max()) - 2
    np.testing.assert_array_equal(split.train_products, mine.product[mine.rank_from_end >= 2])
    for window, target in zip(split.train.inputs, split.train.targets, strict=True):
        assert len(target) and (window > 0).any()


def test_ranking_metrics_by_hand() -> None:
    top = np.array([[5, 1, 2, 3, 4, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]])
    got = rf.ranking_metrics(top, [np.array([1, 99]), np.array([21])])
    assert got["hr@10"] == 0.5
    # User 1: one hit at rank 2 out of an ideal of two hits; user 2: nothing.
    ideal = 1 + 1 / np.log2(3)
    assert got["ndcg@10"] == pytest.approx((1 / np.log2(3)) / ideal / 2)


def test_most_bought_breaks_ties_by_recency_and_tops_up_with_popular() -> None:
    part = rf.Part(np.zeros((1, WIDTH), np.int64), [np.array([1])], [np.array([7, 8, 7, 9, 8])])
    top = rf.most_bought_baseline(part, np.array([1, 1, 1, 2, 2, 8, 3, 4, 5, 6, 10, 11, 12]), k=5)
    # 8 and 7 were bought twice, 8 more recently; then 9; then the most popular not yet listed.
    assert top.tolist() == [[8, 7, 9, 1, 2]]


@pytest.mark.usefixtures("torch_state")
def test_training_steps_export_and_onnx_checks(tiny: rf.Split, tmp_path: Path) -> None:
    hp = rm.Hyper(max_epochs=2, batch_size=16)
    model, report = rm.train(tiny, 20, hp, max_steps=2)
    assert report.epochs_run == 2 and len(report.history) == 2
    assert all(np.isfinite(line["loss"]) for line in report.history)
    # Deterministic: the same seed gives the same weights.
    again, _ = rm.train(tiny, 20, hp, max_steps=2)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name

    path = tmp_path / "recommender.onnx"
    rm.export(model, path)
    _check_against_config(RECOMMENDER, path)  # the tensors the Triton config promises
    check = rm.verify(model, path, tiny.val.inputs)
    assert check.max_score_diff <= rm.SCORE_ATOL and check.max_invariance_diff <= 1e-6

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    window = tiny.test.inputs[:1].copy()
    items, scores = session.run(["top_items", "top_scores"], {"item_ids": window})
    assert items.shape == (1, 20) and items.dtype == np.int64 and scores.dtype == np.float32
    assert 0 < scores.sum() <= 1.0 + 1e-6 and np.all(np.diff(scores) <= 0)
    hostile = window.copy()
    hostile[0, :4] = [10**12, -5, np.iinfo(np.int64).min, 3]  # out of range, negative, unknown
    cleaned = window.copy()
    cleaned[0, :4] = 0
    got = session.run(["top_scores"], {"item_ids": hostile})[0]
    np.testing.assert_allclose(got, session.run(["top_scores"], {"item_ids": cleaned})[0], atol=1e-7)


@pytest.mark.usefixtures("torch_state")
def test_a_corrupted_graph_fails_verification(tiny: rf.Split, tmp_path: Path) -> None:
    model, _ = rm.train(tiny, 20, rm.Hyper(max_epochs=1, batch_size=16), max_steps=1)
    path = tmp_path / "recommender.onnx"
    rm.export(model, path)
    with torch.no_grad():
        model.bias[int(np.argmax(model.bias.numpy()))] += 1.0  # torch now disagrees with the file
    with pytest.raises(AssertionError, match="differs from torch"):
        rm.verify(model, path, tiny.val.inputs)
