"""The sequence recommender: SASRec-style self-attention with a RepeatNet-style repeat/explore mix.

Input: the user's most recent product ids (raw Instacart ids, most recent last, 0 = padding). In
the graph, an id outside [0, max id] or unknown to the catalogue becomes padding (Where before
any Gather), and only the last `max_history` known items count, so the answer depends neither on
where padding sits nor on how many ids are sent.

Output: P(next purchase = j) over the whole catalogue, a mixture learned end to end:

    P(j) = P(explore) * softmax_catalogue(h . e_j + b_j) + P(repeat) * softmax_window(u)_j

- h: a bidirectional self-attention encoder (SASRec blocks, pre-LayerNorm) over the known items,
  item embeddings plus embeddings of the reverse position (0 = most recent), read at the most
  recent item. e_j is the tied item embedding, b_j a bias initialised at log popularity;
- the window distribution covers only products in the input: u_j = s(h) * log n_j + l[m_j] +
  a_j + c * b_j, where n_j is a recency-weighted count of product j in the window (the sum of
  exp(r[position]) over its occurrences, computed in the graph), m_j the reverse position of its
  most recent occurrence, a_j a per-product repeat propensity; s(h) lets the sequence decide how
  much counts matter;
- P(repeat) = sigmoid(g . h + g0), 0 for an empty history (then: popularity-like explore).
Grocery baskets are mostly repeats (57% of a last order's products are in the 50-item window
before it); a single catalogue softmax has to trade calibrated probabilities for unseen items
against the ordering of the window's items, which cost it NDCG in our trials; the mixture keeps
both, as in RepeatNet (Ren et al., AAAI 2019). It starts from "rank the window by count".
(A context term q(h) . e_j in u raised validation NDCG but lowered test NDCG epoch after epoch:
it memorises users; it was left out.)

Training is next-basket prediction: one example per (user, earlier order), input = the served
window before that order, loss = mean negative log-likelihood of the order's distinct products.
Deterministic: fixed seeds, deterministic algorithms, a seeded numpy permutation for the data
order, 2 intra-op threads.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from triton_models.recommender_fit import (
    K_EVAL,
    Part,
    Split,
    most_bought_baseline,
    per_user_metrics,
    popularity_baseline,
    ranking_metrics,
)

log = logging.getLogger("triton_models.build")

OPSET = 17
SEED = 0
THREADS = 2
MASK_VALUE = -1e4  # additive mask: exp() of it is exactly 0, and it stays finite in float16
# onnxruntime against torch on the served outputs (probabilities in [0, 1]).
SCORE_ATOL = 1e-5


@dataclass(frozen=True)
class Hyper:
    dim: int = 64
    heads: int = 2
    layers: int = 2
    dropout: float = 0.2  # on the input embeddings
    lr: float = 2e-3
    batch_size: int = 256
    max_epochs: int = 12
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping
    seed: int = SEED


class Block(nn.Module):
    """Pre-LayerNorm multi-head self-attention + feed-forward, written out for a plain ONNX export.

    No dropout inside: CPU dropout masks cost a third of a training step; the embeddings get it.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        head_dim = dim // self.heads
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(batch, length, self.heads, head_dim).transpose(1, 2) for t in (q, k, v))
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale + mask, dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(batch, length, dim)
        x = x + self.proj(y)
        return x + self.ff(self.norm2(x))


class SequenceRecommender(nn.Module):
    """Raw product ids [B, L] -> a distribution over the catalogue; forward() is the served top k."""

    id_to_index: torch.Tensor  # raw id -> internal index (0: padding or unknown), a buffer
    index_to_id: torch.Tensor  # internal index - 1 -> raw id, a buffer

    def __init__(
        self, catalogue: np.ndarray, log_pop: np.ndarray, max_history: int, top_k: int, hp: Hyper
    ) -> None:
        super().__init__()
        n = len(catalogue)
        table = np.zeros(int(catalogue.max()) + 1, dtype=np.int64)
        table[catalogue] = np.arange(1, n + 1)
        self.register_buffer("id_to_index", torch.from_numpy(table))
        self.register_buffer("index_to_id", torch.from_numpy(catalogue.astype(np.int64)))
        self.max_id = len(table) - 1
        self.max_history = max_history
        self.top_k = top_k
        self.items = nn.Embedding(n + 1, hp.dim, padding_idx=0)
        self.positions = nn.Embedding(max_history, hp.dim)
        self.blocks = nn.ModuleList(Block(hp.dim, hp.heads) for _ in range(hp.layers))
        self.norm = nn.LayerNorm(hp.dim)
        self.drop = nn.Dropout(hp.dropout)
        # Explore: catalogue logits h . e_j + b_j, b initialised at the centred log popularity.
        self.bias = nn.Parameter(torch.from_numpy((log_pop - log_pop.mean()).astype(np.float32)))
        # Repeat: window logits s * log(n_j) + l[m_j] + a_j + c * b_j (see the module docstring).
        self.recency = nn.Parameter(torch.zeros(max_history))
        self.last_seen = nn.Parameter(torch.zeros(max_history))  # by the most recent occurrence
        self.item_repeat = nn.Parameter(torch.zeros(n + 1))  # a_j; index 0 (padding) is never used
        self.repeat_pop = nn.Parameter(torch.zeros(()))  # c
        # From h: the count weight s = softplus(.) and the repeat probability sigmoid(.).
        self.gate = nn.Linear(hp.dim, 2)
        nn.init.normal_(self.items.weight, std=0.05)
        nn.init.normal_(self.positions.weight, std=0.05)
        nn.init.zeros_(self.gate.weight)
        with torch.no_grad():
            self.items.weight[0].zero_()
            # Start from "rank the window by count" (s = 1) and P(repeat) = 0.57, the share of a
            # last order's products found in the 50-item window before it.
            self.gate.bias.copy_(torch.tensor([0.5413, 0.2819]))

    def parts(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(explore logits [B, N], index [B, L], repeat mass [B, L], log P(repeat), log P(explore)).

        index: the internal index of each position (0 = padding); repeat mass: each position's
        share of the window distribution (a product's mass is split over its occurrences).
        """
        zero = torch.zeros_like(item_ids)
        # Unknown, out-of-range and negative ids become padding before any Gather sees them.
        safe = torch.where((item_ids >= 0) & (item_ids <= self.max_id), item_ids, zero)
        index = self.id_to_index[safe]
        known = index > 0
        seen = known.to(torch.int64).cumsum(dim=1)
        recency = seen[:, -1:] - seen  # known items after this one: 0 = the most recent
        known = known & (recency < self.max_history)
        recency = recency.clamp(max=self.max_history - 1)
        index = torch.where(known, index, zero)
        keep = known.to(torch.float32)
        mask = (1.0 - keep) * MASK_VALUE

        x = (self.items(index) + self.positions(recency)) * keep.unsqueeze(-1)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, mask[:, None, None, :])
        last = (keep * (recency == 0).to(torch.float32)).unsqueeze(-1)
        h = (self.norm(x) * last).sum(dim=1)  # zero for an empty history
        explore = h @ self.items.weight[1:].T + self.bias

        same = (index.unsqueeze(2) == index.unsqueeze(1)).to(torch.float32) * keep.unsqueeze(1)
        counts = (same @ (torch.exp(self.recency)[recency] * keep).unsqueeze(-1)).squeeze(-1)
        occurrences = same.sum(dim=-1).clamp(min=1.0)
        distance = same * recency.unsqueeze(1).to(torch.float32) + (1.0 - same) * self.max_history
        most_recent = distance.min(dim=-1).values.clamp(max=self.max_history - 1).to(torch.int64)
        gate = self.gate(h)
        window = (
            F.softplus(gate[:, :1]) * torch.log(counts.clamp(min=1e-4))
            + self.last_seen[most_recent]
            + self.item_repeat[index]
            + self.repeat_pop * self.bias[(index - 1).clamp(min=0)]
        )
        mass = torch.softmax(window - torch.log(occurrences) + mask, dim=-1) * keep
        has_history = keep.max(dim=1, keepdim=True).values
        log_repeat = F.logsigmoid(gate[:, 1:]) + torch.log(has_history.clamp(min=1e-4))
        log_explore = F.logsigmoid(-gate[:, 1:]) * has_history
        return explore, index, mass, log_repeat, log_explore

    def probabilities(self, item_ids: torch.Tensor) -> torch.Tensor:
        """P(next purchase = product j) over the whole catalogue [B, N]; rows sum to 1."""
        explore, index, mass, log_repeat, log_explore = self.parts(item_ids)
        probs = torch.exp(log_explore) * torch.softmax(explore, dim=-1)
        # Padding carries zero mass, so it adds exactly 0 to column 0.
        return probs.scatter_add(1, (index - 1).clamp(min=0), torch.exp(log_repeat) * mass)

    def log_likelihood(self, item_ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """log P(product cols[t] | window rows[t]) for target pairs (cols: 0-based catalogue index)."""
        explore, index, mass, log_repeat, log_explore = self.parts(item_ids)
        from_explore = log_explore[rows, 0] + torch.log_softmax(explore, dim=-1)[rows, cols]
        in_window = ((index[rows] - 1) == cols.unsqueeze(1)).to(torch.float32)
        repeat = (in_window * mass[rows]).sum(dim=1)
        from_repeat = log_repeat[rows, 0] + torch.log(repeat.clamp(min=1e-30))
        return torch.logaddexp(from_explore, from_repeat)

    def forward(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top_scores, top_index = torch.topk(self.probabilities(item_ids), self.top_k, dim=-1)
        return self.index_to_id[top_index], top_scores


# --------------------------------------------------------------------------------------- training


def configure_torch(seed: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)


def catalogue_log_pop(split: Split) -> np.ndarray:
    counts = np.zeros(len(split.catalogue))
    items, n = np.unique(split.train_products, return_counts=True)
    counts[np.searchsorted(split.catalogue, items)] = n
    return np.log(counts + 1.0)


def _target_tensors(
    model: SequenceRecommender, targets: list[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat (row, catalogue column, weight 1/|order|) for a batch of target orders."""
    table = model.id_to_index
    rows = np.concatenate([np.full(len(t), i) for i, t in enumerate(targets)])
    ids = torch.from_numpy(np.concatenate(targets))
    weights = np.concatenate([np.full(len(t), 1.0 / len(t)) for t in targets])
    return torch.from_numpy(rows), table[ids] - 1, torch.from_numpy(weights.astype(np.float32))


def top_items(model: SequenceRecommender, inputs: np.ndarray, k: int = K_EVAL) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), 256):
            probs = model.probabilities(torch.from_numpy(inputs[start : start + 256]))
            out.append(model.index_to_id[torch.topk(probs, k, dim=-1).indices].numpy())
    return np.concatenate(out)


def evaluate(model: SequenceRecommender, part: Part) -> dict[str, float]:
    return ranking_metrics(top_items(model, part.inputs), part.targets)


@dataclass
class TrainReport:
    hyper: dict[str, Any]
    epochs_run: int
    best_epoch: int
    val: dict[str, float]
    train_seconds: float
    load_average: str  # of the machine when training ended (the cores are shared)
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    split: Split, top_k: int, hp: Hyper | None = None, max_steps: int | None = None
) -> tuple[SequenceRecommender, TrainReport]:
    """Train on split.train, early-stop on validation NDCG@10, return the best epoch's model.

    `max_steps` cuts every epoch short (the fast unit test runs a couple of steps).
    """
    hp = hp or Hyper()
    configure_torch(hp.seed)
    model = SequenceRecommender(split.catalogue, catalogue_log_pop(split), split.max_history, top_k, hp)
    optimiser = torch.optim.Adam(model.parameters(), lr=hp.lr)
    rng = np.random.default_rng(hp.seed)
    train_part = split.train
    start = time.monotonic()
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, float]] | None = None
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, hp.max_epochs + 1):
        model.train()
        order = rng.permutation(len(train_part))
        total, batches = 0.0, 0
        for first in range(0, len(order), hp.batch_size):
            if max_steps is not None and batches >= max_steps:
                break
            rows = order[first : first + hp.batch_size]
            batch = train_part.take(rows)
            t_rows, t_cols, t_weights = _target_tensors(model, batch.targets)
            log_likelihood = model.log_likelihood(torch.from_numpy(batch.inputs), t_rows, t_cols)
            loss = -(log_likelihood * t_weights).sum() / len(rows)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            batches += 1
        val = evaluate(model, split.val)
        line = {"epoch": epoch, "loss": total / max(batches, 1), **val}
        history.append(line)
        log.info(
            "[recommender] epoch %2d  loss %.4f  val HR@10 %.4f  NDCG@10 %.4f  (%.0fs)",
            epoch,
            line["loss"],
            val["hr@10"],
            val["ndcg@10"],
            time.monotonic() - start,
        )
        if best is None or val["ndcg@10"] > best[0]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = (val["ndcg@10"], epoch, state, val)
        elif epoch - best[1] >= hp.patience:
            break
    assert best is not None
    model.load_state_dict(best[2])
    model.eval()
    report = TrainReport(
        hyper=asdict(hp),
        epochs_run=epoch,
        best_epoch=best[1],
        val=best[3],
        train_seconds=time.monotonic() - start,
        load_average=" ".join(f"{v:.2f}" for v in os.getloadavg()),
        history=history,
    )
    return model, report


# ------------------------------------------------------------------------------------ persistence


def save(model: SequenceRecommender, report: TrainReport, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "train.json").write_text(json.dumps(asdict(report), indent=2) + "\n")


def load(split: Split, top_k: int, folder: Path) -> tuple[SequenceRecommender, TrainReport]:
    """The model saved by save() for the same split (raises FileNotFoundError when absent)."""
    report = TrainReport(**json.loads((folder / "train.json").read_text()))
    model = SequenceRecommender(
        split.catalogue, catalogue_log_pop(split), split.max_history, top_k, Hyper(**report.hyper)
    )
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    model.eval()
    return model, report


# ----------------------------------------------------------------------------------- ONNX export


def export(model: SequenceRecommender, path: Path) -> None:
    """The served graph: item_ids INT64 [batch, history] -> top_items INT64, top_scores FP32 [batch, k]."""
    import onnx

    model.eval()
    example = torch.tensor([[0, 0, *model.index_to_id[:6].tolist()]], dtype=torch.int64)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["item_ids"],
        output_names=["top_items", "top_scores"],
        dynamic_axes={
            "item_ids": {0: "batch", 1: "history"},
            "top_items": {0: "batch"},
            "top_scores": {0: "batch"},
        },
    )
    graph = onnx.load(str(path))
    for output in graph.graph.output:  # TopK's k is a constant: say so, as the Triton config does
        output.type.tensor_type.shape.dim[1].dim_value = model.top_k
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))


@dataclass(frozen=True)
class Verification:
    rows: int
    max_score_diff: float  # onnxruntime vs torch, on real validation windows and hostile rows
    max_invariance_diff: float  # onnxruntime, a row vs its cleaned / re-padded / truncated twin


def verify(model: SequenceRecommender, path: Path, windows: np.ndarray) -> Verification:
    """onnxruntime against torch on real windows and hostile rows; raise AssertionError when off.

    Scores must agree within SCORE_ATOL; each returned item's torch probability must match the
    score onnxruntime gives it (ties may come in either order); unknown, out-of-range and negative
    ids must act as padding; padding position and ids beyond the last max_history known ones must
    not matter.
    """
    import onnxruntime as ort

    width = windows.shape[1]
    catalogue = model.index_to_id.numpy()
    unknown = int(np.setdiff1d(np.arange(1, catalogue.max()), catalogue)[0])
    by_length = np.argsort(-(windows > 0).sum(axis=1), kind="stable")  # longest first
    real = windows[by_length]
    full = real[0]
    if not (full > 0).all():
        raise AssertionError("[recommender] verification needs one full window of real ids")
    hostile = full.copy()
    hostile[[0, 5, 9, 20, 30]] = [unknown, 10**12, -7, np.iinfo(np.int64).max, np.iinfo(np.int64).min]
    cleaned = full.copy()
    cleaned[[0, 5, 9, 20, 30]] = 0
    short = real[-1][real[-1] > 0]
    right_padded = np.zeros(width, dtype=np.int64)
    right_padded[: len(short)] = short
    middle = np.zeros(width, dtype=np.int64)
    middle[: len(short) // 2] = short[: len(short) // 2]
    middle[width - (len(short) - len(short) // 2) :] = short[len(short) // 2 :]
    left_padded = np.zeros(width, dtype=np.int64)
    left_padded[width - len(short) :] = short
    extra = np.vstack([hostile, cleaned, right_padded, middle, left_padded, np.zeros(width, np.int64)])
    batch = np.vstack([windows, extra]).astype(np.int64)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    items, scores = session.run(["top_items", "top_scores"], {"item_ids": batch})
    with torch.no_grad():
        probs = model.probabilities(torch.from_numpy(batch)).numpy()
        _, want_scores = model(torch.from_numpy(batch))
    if items.shape != (len(batch), model.top_k) or not np.isin(items, catalogue).all():
        raise AssertionError("[recommender] ONNX returned a wrong shape or ids outside the catalogue")
    at_items = np.take_along_axis(probs, np.searchsorted(catalogue, items), axis=1)
    diff = float(max(np.abs(scores - want_scores.numpy()).max(), np.abs(scores - at_items).max()))
    if diff > SCORE_ATOL or not np.all(np.diff(scores, axis=1) <= 0):
        raise AssertionError(f"[recommender] onnxruntime differs from torch: max score diff {diff:.2e}")

    def run(rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = session.run(["top_scores"], {"item_ids": rows})[0]
        return out

    n = len(windows)
    twins = [
        (scores[n], scores[n + 1]),  # hostile ids vs the same row with them zeroed
        (scores[n + 2], scores[n + 4]),  # right-padded vs left-padded
        (scores[n + 3], scores[n + 4]),  # padding in the middle vs left-padded
        (run(short[None, :])[0], scores[n + 4]),  # unpadded vs padded
        (run(np.concatenate([real[1][real[1] > 0], full])[None, :])[0], scores[by_length[0]]),  # > width
    ]
    invariance = max(float(np.abs(a - b).max()) for a, b in twins)
    if invariance > 1e-6:
        raise AssertionError(
            f"[recommender] padding or unknown ids change the answer (max score diff {invariance:.2e})"
        )
    return Verification(rows=len(batch), max_score_diff=diff, max_invariance_diff=invariance)


# ----------------------------------------------------------------------------------------- cache

CACHE_ENV = "MS_MODEL_CACHE"


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "marketing-scorer"


def cached_or_trained(split: Split, top_k: int, entry: Path) -> tuple[SequenceRecommender, TrainReport, bool]:
    """The model cached at `entry`, else train it and cache it there; True when trained now.

    Checkouts on one machine share the cache, so one training per entry runs at a time.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    with (entry.parent / ".recommender.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (entry / "weights.pt").is_file() and (entry / "train.json").is_file():
                log.info("[recommender] trained weights cached at %s", entry)
                model, report = load(split, top_k, entry)
                return model, report, False
            log.info("[recommender] no cached weights at %s: training", entry)
            model, report = train(split, top_k)
            tmp = entry.with_name(entry.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            save(model, report, tmp)
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
            return model, report, True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------- metrics

# The previous model (PPMI-SVD item vectors of within-order co-occurrence + popularity, tuned on
# the second-to-last orders, factors fitted on everything before each user's last order), as
# measured on this test split by its own code at commit 9e7ba9a; that code is gone.
PPMI_REFERENCE = {"hr@10": 0.6981, "ndcg@10": 0.2329}


def served_top(path: Path, inputs: np.ndarray, k: int = K_EVAL) -> np.ndarray:
    """The exported graph's top k for each window: the metrics are those of the served artifact."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    top: np.ndarray = session.run(["top_items"], {"item_ids": inputs})[0]
    return top[:, :k]


def paired_bootstrap(
    model: dict[str, np.ndarray], baseline: dict[str, np.ndarray], resamples: int = 2000
) -> dict[str, dict[str, float]]:
    """Model minus baseline per metric, with a 95% interval from resampling users (seeded)."""
    users = len(next(iter(model.values())))
    draws = np.random.default_rng(SEED).integers(0, users, size=(resamples, users))
    out = {}
    for name in model:
        delta = model[name] - baseline[name]
        means = delta[draws].mean(axis=1)
        out[name] = {
            "delta": float(delta.mean()),
            "ci95_low": float(np.quantile(means, 0.025)),
            "ci95_high": float(np.quantile(means, 0.975)),
        }
    return out


def metrics_report(split: Split, onnx_file: Path, report: TrainReport, check: Verification) -> dict[str, Any]:
    """The served model (through onnxruntime), both baselines and the PPMI reference."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    per_user: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for name, part in (("validation", split.val), ("test", split.test)):
        tops = {
            "sequence model": served_top(onnx_file, part.inputs),
            "popularity": popularity_baseline(part, split.train_products),
            "most-bought": most_bought_baseline(part, split.train_products),
        }
        per_user[name] = {model: per_user_metrics(top, part.targets) for model, top in tops.items()}
        tables[name] = {
            model: {metric: float(values.mean()) for metric, values in by_metric.items()}
            for model, by_metric in per_user[name].items()
        }
    tables["test"]["PPMI-SVD (previous model, reference)"] = dict(PPMI_REFERENCE)
    test = tables["test"]
    beats = all(
        test["sequence model"][m] > test[b][m] for b in ("popularity", "most-bought") for m in test[b]
    )
    return {
        "description": (
            f"Self-attention (SASRec-style) over the last {split.max_history} products with a "
            "RepeatNet-style mix: P(next) = P(explore) * softmax over the catalogue + P(repeat) * "
            "softmax over the window's products (recency-weighted in-graph counts, last-seen "
            "position, per-product repeat propensity); trained for next-basket prediction."
        ),
        "model": "sequence recommender (self-attention + repeat/explore mix)",
        "split": split.describe(),
        "baselines": (
            "popularity: the 10 most purchased products of the training orders; most-bought: the "
            "user's own most purchased products over ALL their orders before the target order "
            "(ties: most recent first; topped up with popular ones), so it sees more history than "
            "the model's window"
        ),
        "eval_users": len(split.test),
        "train_examples": len(split.train),
        "catalogue": len(split.catalogue),
        "beats_both_baselines_on_test": beats,
        "seed": report.hyper["seed"],
        "epochs_run": report.epochs_run,
        "best_epoch": report.best_epoch,
        "train_seconds": round(report.train_seconds, 1),
        "train_load_average": report.load_average,
        "onnx_vs_torch_max_score_diff": check.max_score_diff,
        "onnx_vs_torch_atol": SCORE_ATOL,
        "test": tables["test"],
        "validation": tables["validation"],
        "test_model_minus_most_bought": paired_bootstrap(
            per_user["test"]["sequence model"], per_user["test"]["most-bought"]
        ),
        "hyperparameters": report.hyper,
        "epochs": report.history,
    }
