"""What the demo says about the models it serves: which version, which training, how to upgrade.

Read from the version cards the build wrote (`triton_models/<model>/<n>/card.json`), so the
demo can say that an answer came from the quick text encoder, and how to get the full fine-tune
and swap it in live.
"""

from __future__ import annotations

from functools import cache

from triton_models import TEXT_ENCODER, current_version, load_card, versions

SWAP_CONFIG = "build/triton-cpu/text_encoder/config.pbtxt"


@cache
def training_of(model: str, version: int) -> str | None:
    """The card's training variant (full, fast, quick), None for a model that has none."""
    card = load_card(model, version)
    training = card.get("training") if card else None
    return str(training) if training else None


def served_text_encoder() -> str:
    """One line: the text encoder version the demo serves, what it is and its test scores."""
    version = current_version(TEXT_ENCODER)
    card = load_card(TEXT_ENCODER, version) or {}
    details = card.get("details", {})
    training = card.get("training", "unknown")
    what = {
        "quick": "quick: frozen MiniLM + logistic-regression heads, no fine-tune",
        "fast": "fast: a 300-step fine-tune",
        "full": "full fine-tune",
    }.get(training, training)
    scores = ""
    if "sentiment_test_accuracy" in details:
        scores = f"; test sentiment accuracy {details['sentiment_test_accuracy']:.1%}"
    if isinstance(details.get("intent_test_macro_f1"), float):
        scores += f", intent macro-F1 {details['intent_test_macro_f1']:.3f}"
    return f"text_encoder v{version} ({what}{scores})"


def upgrade_hint() -> str | None:
    """How to get the full fine-tune and swap it in live, unless the served version is full."""
    version = current_version(TEXT_ENCODER)
    if training_of(TEXT_ENCODER, version) == "full":
        return None
    full = max(versions(TEXT_ENCODER), default=0) + 1
    return (
        f"text_encoder v{version} answered, not the full fine-tune. To get it: `make models` (~22 min on"
        " 2 cores, once per machine; cached), then `make demo` serves it. To swap it in live instead,"
        " keep a stack up (`.venv/bin/python -m stack up`), run `make models` beside it, then"
        f" `.venv/bin/python -m streams models serve text_encoder {full} --config {SWAP_CONFIG}`"
        f" (v{full} if nothing else is built first: `make models` logs the number)."
    )
