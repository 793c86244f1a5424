"""Per-user state kept in a Faust table (changelog-backed, so it survives a worker restart).

The table stores plain dicts (`Profile.model_dump(mode="json")`) so its changelog stays readable
JSON. Times are event times (the events' own `ts`), so replaying a stream gives the same state.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from streams.schemas.events import ClickEvent, ClickType

MAX_CART = 50
MAX_CATEGORIES = 50  # category names are free text (64 chars): a profile must not grow with them
RECENT_EVENTS = 20
SENTIMENT_ALPHA = 0.3  # weight of the newest text in the sentiment moving average
DEAL_WORDS = ("sale", "deal", "discount", "coupon", "promo", "offer", "cheap", "voucher", "bogo")


class Profile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: int = 0
    purchases: int = 0
    monetary: float = Field(default=0.0, description="Sum of purchase price x quantity.")
    cart: list[int] = Field(default_factory=list)
    recent_items: list[int] = Field(default_factory=list)
    recent_types: list[str] = Field(
        default_factory=list, description="Types of the last events, oldest first."
    )
    deal_searches: int = Field(default=0, description="Searches for deals among the recent events.")
    categories: dict[str, int] = Field(default_factory=dict, description="Product events per category.")
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    last_cart_change: AwareDatetime | None = None
    last_purchase: AwareDatetime | None = None
    sentiment: float | None = Field(default=None, description="EWMA of P(positive) of the user's texts")
    texts: int = 0
    segments: list[str] = Field(default_factory=list)
    segment_since: dict[str, AwareDatetime] = Field(
        default_factory=dict, description="Event time each of `segments` was entered (for minimum dwell)."
    )
    version: int = 0

    def _seen(self, ts: datetime) -> None:
        self.first_seen = min(self.first_seen, ts) if self.first_seen else ts
        self.last_seen = max(self.last_seen, ts) if self.last_seen else ts

    def apply_click(self, event: ClickEvent, *, keep_items: int) -> None:
        self.events += 1
        self._seen(event.ts)
        self.recent_types = [*self.recent_types, event.type.value][-RECENT_EVENTS:]
        if event.type is ClickType.SEARCH:
            query = (event.query or "").lower()
            if any(word in query for word in DEAL_WORDS):
                self.deal_searches += 1
        pid = event.product_id
        if pid is not None and event.category:
            self._count_category(event.category)
        if pid is not None and event.type in (
            ClickType.PRODUCT_VIEW,
            ClickType.ADD_TO_CART,
            ClickType.PURCHASE,
        ):
            self.recent_items = [*self.recent_items, pid][-keep_items:]
        if event.type is ClickType.ADD_TO_CART and pid is not None and pid not in self.cart:
            self.cart = [*self.cart, pid][-MAX_CART:]
            self.last_cart_change = event.ts
        elif event.type is ClickType.REMOVE_FROM_CART and pid in self.cart:
            self.cart = [p for p in self.cart if p != pid]
            self.last_cart_change = event.ts
        elif event.type is ClickType.PURCHASE:
            self.purchases += 1
            self.monetary += (event.price or 0.0) * event.quantity
            self.last_purchase = event.ts
            self.cart = [p for p in self.cart if p != pid]
            self.last_cart_change = event.ts

    def _count_category(self, category: str) -> None:
        """Count one product event; past MAX_CATEGORIES, the least counted other category goes."""
        self.categories[category] = self.categories.get(category, 0) + 1
        if len(self.categories) > MAX_CATEGORIES:
            rarest = min((c for c in self.categories if c != category), key=lambda c: (self.categories[c], c))
            del self.categories[rarest]

    def apply_text(self, p_positive: float, ts: datetime) -> None:
        self.texts += 1
        self._seen(ts)
        if self.sentiment is None:
            self.sentiment = p_positive
        else:
            self.sentiment = (1 - SENTIMENT_ALPHA) * self.sentiment + SENTIMENT_ALPHA * p_positive

    def top_categories(self, n: int = 3) -> list[str]:
        return [c for c, _ in Counter(self.categories).most_common(n)]
