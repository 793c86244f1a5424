"""The text encoder: MiniLM + mean pooling + sentiment and intent heads, exported to ONNX.

One encoder pass yields every output the worker needs (class probabilities and the sentence
embedding), so a message costs one BERT forward however many heads it feeds.

Training is pluggable: the heads are freshly initialised (seed 0) until a fine-tune writes a
state dict of the whole `TextEncoder` to `triton_models/text_encoder/artifacts/text_encoder.pt`
(git-ignored); the build then loads it, and its hash is part of the build inputs.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from triton_models import TEXT_ENCODER_CHECKPOINT, load_labels, minilm_path

log = logging.getLogger("triton_models.build")

CHECKPOINT = TEXT_ENCODER_CHECKPOINT
OPSET = 17
ATOL = 1e-4  # ORT vs torch, every output; fp32 on CPU lands around 1e-6..5e-5
HEAD_SEED = 0

# Real customer-service / marketing sentences, of assorted lengths, for the export check.
CHECK_SENTENCES = (
    "Where is my order? It was supposed to arrive on Monday.",
    "I love the new spring collection, great quality and fast delivery!",
    "Please cancel my subscription and refund the last payment.",
    "hi",
    "My card was charged twice for the same order #48213, this is unacceptable.",
    "Do you have a discount code for first-time customers?",
    "I can't log into my account after resetting the password, can I talk to a real person?",
    "The blender I bought last week stopped working. I want to return it and get my money back, "
    "or at least an exchange, because this is the second time it happened with your products.",
)


def tokenizer_file() -> Path:
    return minilm_path() / "tokenizer.json"


class TextEncoder(nn.Module):
    """BERT encoder -> masked mean pooling -> L2 normalisation = the features; linear heads with
    softmax on the features; the served embedding = L2-normalised `embedding_head(features)`.

    `embedding_head` starts as the identity, so an untouched encoder serves all-MiniLM-L6-v2's
    sentence embedding exactly (the quick model; a head fitted as logistic regression on served
    embeddings drops in unchanged). The fine-tune trains it, with the encoder, to reproduce the
    pretrained embedding from the fine-tuned features (a distillation term), so one encoder pass
    serves task heads that moved the features and a general sentence embedding.
    """

    def __init__(self, encoder: nn.Module, hidden: int, n_sentiment: int, n_intents: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.sentiment_head = nn.Linear(hidden, n_sentiment)
        self.intent_head = nn.Linear(hidden, n_intents)
        self.embedding_head = nn.Linear(hidden, hidden)
        with torch.no_grad():
            self.embedding_head.weight.copy_(torch.eye(hidden))
            self.embedding_head.bias.zero_()

    def logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sentiment logits, intent logits, served embedding): what training reads."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # As sentence-transformers' Pooling(mean): sum over real tokens / their count (>= 1e-9).
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        features = F.normalize(pooled, p=2.0, dim=1)
        embedding = F.normalize(self.embedding_head(features), p=2.0, dim=1)
        return self.sentiment_head(features), self.intent_head(features), embedding

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # A calibration temperature is folded into the sentiment head's weights by the fine-tune,
        # so the served softmax is already calibrated.
        sentiment, intents, embedding = self.logits(input_ids, attention_mask)
        return torch.softmax(sentiment, dim=-1), torch.softmax(intents, dim=-1), embedding


def load_text_encoder(checkpoint: Path | None = CHECKPOINT) -> TextEncoder:
    """The model to export: pretrained MiniLM, heads from `checkpoint` if it exists, else seed 0."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load is noise in the build log
    labels = load_labels()
    # Eager attention: the SDPA path traces to a graph that ties the mask to the example shape.
    encoder = AutoModel.from_pretrained(
        str(minilm_path()), local_files_only=True, attn_implementation="eager"
    )
    hidden = int(encoder.config.hidden_size)
    if hidden != int(labels["embedding_dim"]):
        raise ValueError(
            f"MiniLM hidden size {hidden} != labels.json embedding_dim {labels['embedding_dim']}"
        )
    if int(labels["tokenizer"]["max_length"]) > int(encoder.config.max_position_embeddings):
        raise ValueError("labels.json max_length exceeds the encoder's position embeddings")
    torch.manual_seed(HEAD_SEED)
    model = TextEncoder(encoder, hidden, len(labels["sentiment"]), len(labels["intents"]))
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if "embedding_head.weight" not in state:  # saved before the head existed: it served the features
            state["embedding_head.weight"] = torch.eye(hidden)
            state["embedding_head.bias"] = torch.zeros(hidden)
        model.load_state_dict(state)
        log.info("[text_encoder] loaded fine-tuned weights from %s", checkpoint)
    else:
        log.info(
            "[text_encoder] heads freshly initialised (seed %d): probabilities are not yet meaningful",
            HEAD_SEED,
        )
    return model.eval()


def tokenize(texts: list[str] | tuple[str, ...], pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise as the worker does: the fast tokenizer, truncation at max_length, pad id from labels."""
    from tokenizers import Tokenizer

    facts = load_labels()["tokenizer"]
    tok = Tokenizer.from_file(str(tokenizer_file()))
    tok.enable_truncation(max_length=int(facts["max_length"]))
    tok.no_padding()
    encodings = tok.encode_batch(list(texts))
    length = max(len(e.ids) for e in encodings) if pad_to is None else pad_to
    ids = np.full((len(encodings), length), int(facts["pad_id"]), dtype=np.int64)
    mask = np.zeros((len(encodings), length), dtype=np.int64)
    for row, enc in enumerate(encodings):
        n = min(len(enc.ids), length)
        ids[row, :n] = enc.ids[:n]
        mask[row, :n] = 1
    return ids, mask


def check_tokenizer_facts() -> None:
    """labels.json must agree with the tokenizer the worker loads; fail the build if not."""
    from tokenizers import Tokenizer

    facts = load_labels()["tokenizer"]
    tok = Tokenizer.from_file(str(tokenizer_file()))
    pad_id = tok.token_to_id(facts["pad_token"])
    if pad_id != int(facts["pad_id"]):
        raise ValueError(
            f"labels.json pad_id {facts['pad_id']} but the tokenizer maps {facts['pad_token']} to {pad_id}"
        )


@dataclass(frozen=True)
class ExportCheck:
    max_abs_diff: dict[str, float]
    cases: int


def export(model: TextEncoder, dest: Path) -> None:
    """torch.onnx.export with the TorchScript exporter (dynamo=False).

    The dynamo exporter needs onnxscript, which is not installed; the TorchScript exporter
    handles BERT with dynamic batch and sequence axes and matches torch to ~1e-5.
    """
    ids, mask = tokenize(CHECK_SENTENCES[:2])
    axes = {0: "batch", 1: "sequence"}
    dest.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings about shape-dependent Python branches in transformers' mask code; the
        # verification below runs other batch sizes and lengths, which is what would catch them.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings(
            "ignore", "Exporting aten::index operator", UserWarning
        )  # no negative ids here
        torch.onnx.export(
            model,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(dest),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentiment_probs", "intent_probs", "embedding"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "sentiment_probs": {0: "batch"},
                "intent_probs": {0: "batch"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    _pin_output_widths(dest, model)


def _pin_output_widths(path: Path, model: TextEncoder) -> None:
    """Write the static widths (2, 13, 384) into the graph outputs.

    The TorchScript exporter leaves them symbolic ('Divembedding_dim_1'); static widths let Triton
    and TensorRT check and plan shapes instead of trusting the config.
    """
    import onnx

    proto = onnx.load(str(path))
    widths = {
        "sentiment_probs": model.sentiment_head.out_features,
        "intent_probs": model.intent_head.out_features,
        "embedding": model.sentiment_head.in_features,
    }
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        dims[1].dim_value = widths[output.name]
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def verify(model: TextEncoder, onnx_file: Path, atol: float = ATOL) -> ExportCheck:
    """Run torch and onnxruntime on real sentences in several batch/padding layouts; raise if off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    names = ["sentiment_probs", "intent_probs", "embedding"]
    layouts = [
        tokenize(CHECK_SENTENCES),  # padded to the longest
        tokenize(CHECK_SENTENCES[3:4]),  # batch 1, a two-token text
        tokenize(CHECK_SENTENCES[:5], pad_to=64),  # extra padding, as the worker's buckets add
        tokenize(CHECK_SENTENCES[-1:] * 3, pad_to=128),
    ]
    worst = dict.fromkeys(names, 0.0)
    for ids, mask in layouts:
        got = session.run(names, {"input_ids": ids, "attention_mask": mask})
        with torch.no_grad():
            want = [t.numpy() for t in model(torch.from_numpy(ids), torch.from_numpy(mask))]
        for name, g, w in zip(names, got, want, strict=True):
            if g.shape != w.shape:
                raise AssertionError(f"[text_encoder] {name}: ORT shape {g.shape} != torch {w.shape}")
            worst[name] = max(worst[name], float(np.max(np.abs(g - w))))
        norms = np.linalg.norm(got[2], axis=1)
        if not np.allclose(norms, 1.0, atol=1e-4):
            raise AssertionError(f"[text_encoder] embeddings are not unit length: {norms}")
        if not np.allclose(got[0].sum(axis=1), 1.0, atol=1e-5) or not np.allclose(
            got[1].sum(axis=1), 1.0, atol=1e-5
        ):
            raise AssertionError("[text_encoder] probabilities do not sum to 1")
    bad = {k: v for k, v in worst.items() if v > atol}
    if bad:
        raise AssertionError(f"[text_encoder] ONNX export differs from torch beyond atol {atol}: {bad}")
    return ExportCheck(max_abs_diff=worst, cases=sum(ids.shape[0] for ids, _ in layouts))
