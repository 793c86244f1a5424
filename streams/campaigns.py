"""Campaigns the bidder can buy for, read from `config/campaigns.json`, and their pricing.

A campaign promotes some Instacart products (ids as in the recommender's catalogue); a campaign
without products is store-wide (its creative shows the user's own recommendations). Pricing:

    propensity = min(1, base x (1 + sum of the campaign's boosts for the user's segments))
    base       = sum of the recommender's scores for the campaign's products found in the user's
                 top 20 (store-wide: the sum of all 20 scores)
    price_cpm  = round(min(max_cpm, propensity x value_per_conversion x 1000 x shade), 4)

The recommender's scores are a softmax over the catalogue, so `base` is the probability that the
user's next purchase is one of the campaign's products (as far as the top 20 shows it): the
expected value of one impression is `propensity x value_per_conversion`, of a thousand
impressions 1000 times that, and `shade` keeps part of it as margin.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.errors import ConfigError
from streams.schemas.bids import MarkupType

CAMPAIGNS_FILE = Path(__file__).resolve().parent.parent / "config" / "campaigns.json"
DEFAULT_SEAT = "marketing-scorer"
PRICE_DECIMALS = 4


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Product(_Config):
    id: int = Field(gt=0, description="Instacart product id, as the recommender returns it.")
    name: str


class NativeAd(_Config):
    """The pieces a native ad is assembled from (Dynamic Native Ads API 1.2, section 5)."""

    title: str
    image_url: str
    image_w: int = Field(gt=0)
    image_h: int = Field(gt=0)
    icon_url: str | None = None
    icon_size: int = Field(default=80, gt=0)
    sponsored: str
    description: str
    cta: str = "Shop now"
    click_url: str
    impression_tracker: str | None = None

    def markup(self, request: str) -> str | None:
        """The native response for a native request string, or None when a required asset cannot
        be filled. Asset ids echo the request's. Native 1.0 requests (a root `native` node)
        get a root `native` node back; 1.1 and later use the object itself as the root."""
        try:
            parsed = json.loads(request)
        except (ValueError, RecursionError):
            return None
        legacy = isinstance(parsed, dict) and isinstance(parsed.get("native"), dict)
        body = parsed["native"] if legacy else parsed
        if not isinstance(body, dict) or not isinstance(body.get("assets"), list):
            return None
        assets = []
        for asset in body["assets"]:
            if not isinstance(asset, dict):
                return None
            filled = self._asset(asset)
            if filled is None:
                if asset.get("required") == 1:
                    return None
                continue
            assets.append({"id": asset.get("id"), **filled})
        response: dict[str, object] = {"ver": "1.2", "assets": assets, "link": {"url": self.click_url}}
        if self.impression_tracker:
            response["eventtrackers"] = [{"event": 1, "method": 1, "url": self.impression_tracker}]
        return json.dumps({"native": response} if legacy else response, separators=(",", ":"))

    def _asset(self, asset: dict[str, object]) -> dict[str, object] | None:
        def cut(text: str, spec: dict[str, object]) -> str:
            n = spec.get("len")
            return text[:n] if type(n) is int and n > 0 else text

        title, img, data = asset.get("title"), asset.get("img"), asset.get("data")
        if isinstance(title, dict):
            return {"title": {"text": cut(self.title, title)}}
        if isinstance(img, dict):
            icon = img.get("type") == 1
            url, w, h = (
                (self.icon_url, self.icon_size, self.icon_size)
                if icon
                else (self.image_url, self.image_w, self.image_h)
            )
            if url is None or img.get("type") not in (None, 1, 3):
                return None
            for dim, have in (("w", w), ("h", h)):
                need, least = img.get(dim), img.get(f"{dim}min")
                if (isinstance(need, int) and need != have) or (isinstance(least, int) and have < least):
                    return None
            return {"img": {"url": url, "w": w, "h": h}}
        if isinstance(data, dict):
            texts = {1: self.sponsored, 2: self.description, 12: self.cta}
            kind = data.get("type")
            if not isinstance(kind, int) or kind not in texts:
                return None
            return {"data": {"value": cut(texts[kind], data)}}
        return None  # video and other assets are not supported


class Creative(_Config):
    """One ad. Banners have a size; video and audio a duration and media mime types; native the
    pieces of the ad (`native`), assembled per request."""

    crid: str
    format: Literal["banner", "video", "audio", "native"]
    w: int | None = Field(default=None, gt=0)
    h: int | None = Field(default=None, gt=0)
    mimes: list[str] = Field(default_factory=list, description="Mime types of the creative's assets.")
    duration_s: int | None = Field(default=None, gt=0)
    protocols: list[int] = Field(default_factory=list, description="AdCOM audio/video subtypes (VAST).")
    attr: list[int] = Field(default_factory=list, description="AdCOM creative attributes.")
    secure: bool = Field(default=True, description="Every asset and tracker is served over HTTPS.")
    language: str | None = None
    adm: str | None = Field(default=None, description="Markup sent in the bid (HTML or VAST).")
    native: NativeAd | None = None
    iurl: str | None = None

    @property
    def mtype(self) -> MarkupType:
        return MarkupType[self.format.upper()]

    @model_validator(mode="after")
    def _shape(self) -> Creative:
        if self.format == "banner" and (self.w is None or self.h is None):
            raise ValueError(f"banner creative {self.crid} needs w and h")
        if self.format in ("video", "audio") and (self.duration_s is None or not self.mimes):
            raise ValueError(f"{self.format} creative {self.crid} needs duration_s and mimes")
        if (self.format == "native") != (self.native is not None):
            raise ValueError(f"creative {self.crid}: `native` is for, and required by, native creatives")
        return self


class FrequencyCap(_Config):
    impressions: int = Field(ge=1, description="At most this many bids for one user ...")
    window_s: int = Field(ge=1, description="... within this many seconds.")


class Pacing(_Config):
    """The day's target curve F(t), the share of the daily budget to have spent by time t of
    the (UTC) day. `even`: F(t) = t / 24 h; `shape`: 24 hour-of-day weights w_0..w_23, F(t) =
    (w_0 + ... + w_(h-1) + w_h x (fraction of hour h gone)) / sum(w); `asap`: no curve, spend as
    fast as the traffic allows. Spend (booked plus reserved) never runs more than `burst` of the
    budget ahead of F (a hard line), and the pacing controller (`streams.pacing_control`)
    throttles bids to follow F."""

    mode: Literal["even", "asap", "shape"] = "even"
    burst: float = Field(default=0.02, ge=0, le=1, description="How far ahead of the line it may run.")
    shape: list[float] | None = Field(
        default=None, description="`shape` only: 24 weights, one per UTC hour of the day, >= 0."
    )

    @model_validator(mode="after")
    def _curve(self) -> Pacing:
        if self.mode == "shape":
            if self.shape is None or len(self.shape) != 24:
                raise ValueError("pacing `shape` needs 24 hour-of-day weights")
            if any(not math.isfinite(w) or w < 0 for w in self.shape) or sum(self.shape) <= 0:
                raise ValueError("pacing weights must be finite, >= 0, and not all 0")
        elif self.shape is not None:
            raise ValueError(f"pacing mode {self.mode!r} takes no `shape` (mode `shape` does)")
        return self

    def fraction(self, now: datetime) -> float:
        """F(now): the share of the day's budget the curve allows by `now` (asap: 1)."""
        if self.mode == "asap":
            return 1.0
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        elapsed = (now - midnight).total_seconds() / 3600  # hours, 0 <= elapsed < 24
        if self.shape is None:
            return elapsed / 24
        hour = int(elapsed)
        return (sum(self.shape[:hour]) + self.shape[hour] * (elapsed - hour)) / sum(self.shape)


@dataclass(frozen=True)
class Propensity:
    value: float
    base: float
    boost: float  # the multiplier's increment: value = min(1, base x (1 + boost))
    matched: tuple[tuple[int, float], ...]  # (product id, score) found in the top items
    segments: tuple[str, ...]  # the user's segments that boosted it

    def explain(self) -> str:
        items = "+".join(f"{pid}:{score:.6f}" for pid, score in self.matched) or "none"
        boosts = ",".join(self.segments) or "none"
        return f"min(1,{self.base:.6f}*(1+{self.boost:g}))={self.value:.6f} items={items} segments={boosts}"


class Campaign(_Config):
    id: str
    name: str | None = None
    active: bool = True
    seat: str = Field(default=DEFAULT_SEAT, description="The buyer seat bids are made for (wseat/bseat).")
    adomain: list[str] = Field(min_length=1)
    cat: list[str] = Field(default_factory=list, description="IAB categories of the ads.")
    cattax: int = Field(default=1, description="Taxonomy of `cat`; 1 = IAB Content Category Taxonomy 1.0.")
    bundle: str | None = Field(default=None, description="Store id of the app advertised, if any (bapp).")
    products: list[Product] = Field(default_factory=list, description="Empty: a store-wide campaign.")
    segment_boost: dict[str, float] = Field(default_factory=dict)
    exclude_segments: list[str] = Field(default_factory=list)
    value_per_conversion: float = Field(gt=0, description="What one conversion is worth, in the currency.")
    shade: float = Field(default=0.8, gt=0, le=1, description="Bid this fraction of the expected value.")
    max_cpm: float = Field(gt=0)
    daily_budget: float = Field(gt=0, description="Spend per UTC day, in the book's currency.")
    pacing: Pacing = Field(default_factory=Pacing)
    frequency_cap: FrequencyCap | None = None
    creatives: list[Creative] = Field(min_length=1)

    @model_validator(mode="after")
    def _boosts(self) -> Campaign:
        if any(b < 0 for b in self.segment_boost.values()):
            raise ValueError(f"campaign {self.id}: segment boosts must be >= 0")
        return self

    def propensity(
        self, items: Sequence[int], scores: Sequence[float], segments: Sequence[str]
    ) -> Propensity:
        wanted = {p.id for p in self.products}
        matched = tuple(
            (int(item), float(score))
            for item, score in zip(items, scores, strict=True)
            if int(item) > 0 and (not wanted or int(item) in wanted)
        )
        base = sum(score for _, score in matched)
        boosting = tuple(s for s in segments if s in self.segment_boost)
        boost = sum(self.segment_boost[s] for s in boosting)
        return Propensity(min(1.0, base * (1 + boost)), base, boost, matched, boosting)

    def price_cpm(self, propensity: float) -> float:
        """Expected value of 1000 impressions, shaded, capped."""
        raw = propensity * self.value_per_conversion * 1000 * self.shade
        return round(min(self.max_cpm, raw), PRICE_DECIMALS)

    def price_formula(self, propensity: float) -> str:
        return (
            f"min({self.max_cpm:g},{propensity:.6f}*{self.value_per_conversion:g}*1000*{self.shade:g})"
            f"={self.price_cpm(propensity):g}"
        )


class CampaignBook(_Config):
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO-4217: prices and budgets.")
    campaigns: list[Campaign] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CampaignBook:
        ids = [c.id for c in self.campaigns]
        crids = [cr.crid for c in self.campaigns for cr in c.creatives]
        if len(set(ids)) != len(ids) or len(set(crids)) != len(crids):
            raise ValueError("campaign ids and creative ids must be unique")
        if any(not re.fullmatch(r"[A-Za-z0-9._-]+", i) for i in ids):
            raise ValueError("campaign ids are letters, digits, '.', '_' and '-' (they are state keys)")
        return self

    @property
    def active(self) -> list[Campaign]:
        return [c for c in self.campaigns if c.active]


def load_campaigns(path: Path = CAMPAIGNS_FILE) -> CampaignBook:
    try:
        return CampaignBook.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise ConfigError(f"cannot load campaigns from {path}: {exc}") from exc
