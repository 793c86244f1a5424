"""Model label sets, read from the model repository so the worker and the model cannot disagree."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from streams.errors import ConfigError

LABELS_FILE = Path(__file__).resolve().parent.parent / "triton_models" / "text_encoder" / "labels.json"


DEFAULT_NEUTRAL_BAND = (0.35, 0.65)  # used until a calibrated band ships with the model


@dataclass(frozen=True)
class TextLabels:
    sentiment: tuple[str, ...]
    intents: tuple[str, ...]
    neutral_band: tuple[float, float] = DEFAULT_NEUTRAL_BAND


def load_labels(path: Path = LABELS_FILE) -> TextLabels:
    try:
        data = json.loads(path.read_text())
        band = data.get("neutral_band", DEFAULT_NEUTRAL_BAND)
        return TextLabels(
            sentiment=tuple(data["sentiment"]),
            intents=tuple(data["intents"]),
            neutral_band=(float(band[0]), float(band[1])),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read model labels from {path}: {exc}") from exc
