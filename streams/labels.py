"""What a served model version means, learned from the server, never from the worker's own copy.

The build (triton_models/configs.py) puts every version's card into the served model config's
parameters (`card.<n>`, JSON); the text encoder's card holds the label order, the output names
and the calibrated neutral band the version was built with. The worker reads them with
`get_model_config` the first time an answer names a version it has not seen (see
streams.inference.TritonModels), so a swapped-in version brings its own labels and a version
whose card is missing cannot be used: a model whose outputs cannot be named is not guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.errors import ConfigError
from streams.schemas.outputs import ModelRef

CARD_PARAMETER = "card.{version}"  # triton_models.configs.PARAM_CARD
DEFAULT_NEUTRAL_BAND = (0.35, 0.65)  # when a card predates the calibrated band


@dataclass(frozen=True, order=True)
class ModelVersion:
    """A model as Triton served it: the name and the version that answered."""

    name: str
    version: int


@dataclass(frozen=True)
class TextLabels:
    sentiment: tuple[str, ...]
    intents: tuple[str, ...]
    neutral_band: tuple[float, float] = DEFAULT_NEUTRAL_BAND
    outputs: tuple[str, str, str] = (
        "sentiment_probs",
        "intent_probs",
        "embedding",
    )  # sentiment, intents, emb


def text_labels(data: Mapping[str, Any]) -> TextLabels:
    """Parse a card's `labels` (the build's copy of triton_models/text_encoder/labels.json)."""
    band = data.get("neutral_band", DEFAULT_NEUTRAL_BAND)
    outputs = data["outputs"]
    labels = TextLabels(
        sentiment=tuple(data["sentiment"]),
        intents=tuple(data["intents"]),
        neutral_band=(float(band[0]), float(band[1])),
        outputs=(str(outputs["sentiment"]), str(outputs["intents"]), str(outputs["embedding"])),
    )
    if list(labels.sentiment) != ["negative", "positive"]:
        raise ValueError(f"sentiment labels {labels.sentiment}: the worker reads P(positive) as column 1")
    return labels


def version_card(config: Mapping[str, Any], version: int) -> dict[str, Any]:
    """Version `version`'s card from a model config as `get_model_config(..., as_json=True)`
    returns it (`{"config": {...}}` or the config itself)."""
    cfg = config.get("config", config)
    key = CARD_PARAMETER.format(version=version)
    try:
        raw = cfg["parameters"][key]["string_value"]
    except KeyError:
        raise ConfigError(
            f"model {cfg.get('name')!r} serves version {version} without a card (parameter {key!r}); "
            "rebuild the repository with `python -m triton_models.build`"
        ) from None
    try:
        card: dict[str, Any] = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"model {cfg.get('name')!r} version {version}: unreadable card: {exc}") from exc
    return card


def text_labels_of(config: Mapping[str, Any], version: int) -> TextLabels:
    card = version_card(config, version)
    try:
        return text_labels(card["labels"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"text encoder version {version}: its card has no usable labels: {exc}") from exc


def model_ref(model: ModelVersion) -> ModelRef:
    """The version as outputs name it (`model: {name, version}`)."""
    return ModelRef(name=model.name, version=model.version)
