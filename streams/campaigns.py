"""Campaigns the bidder can buy for, read from `config/campaigns.json`."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.errors import ConfigError

CAMPAIGNS_FILE = Path(__file__).resolve().parent.parent / "config" / "campaigns.json"


class Campaign(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    adomain: list[str] = Field(min_length=1)
    crid: str
    value_per_conversion: float = Field(gt=0, description="What one conversion is worth, in the currency.")
    shade: float = Field(default=0.8, gt=0, le=1, description="Bid this fraction of the expected value.")
    max_cpm: float = Field(gt=0)

    def price_cpm(self, propensity: float) -> float:
        """Expected value of 1000 impressions, shaded, capped: propensity x value x 1000 x shade."""
        return round(min(self.max_cpm, propensity * self.value_per_conversion * 1000 * self.shade), 4)


class CampaignBook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    campaigns: list[Campaign] = Field(min_length=1)


def load_campaigns(path: Path = CAMPAIGNS_FILE) -> CampaignBook:
    try:
        return CampaignBook.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise ConfigError(f"cannot load campaigns from {path}: {exc}") from exc
