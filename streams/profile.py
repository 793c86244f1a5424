"""Per-user state kept in a Faust table (changelog-backed, so it survives a worker restart).

The table stores plain dicts (`Profile.model_dump`) so its changelog stays readable JSON.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streams.schemas.events import ClickEvent, ClickType

MAX_CART = 50
SENTIMENT_ALPHA = 0.3  # weight of the newest text in the sentiment moving average


class Profile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: int = 0
    purchases: int = 0
    cart: list[int] = Field(default_factory=list)
    recent_items: list[int] = Field(default_factory=list)
    sentiment: float | None = Field(default=None, description="EWMA of P(positive) of the user's texts")
    texts: int = 0
    segments: list[str] = Field(default_factory=list)
    version: int = 0

    def apply_click(self, event: ClickEvent, *, keep_items: int) -> None:
        self.events += 1
        pid = event.product_id
        if pid is not None and event.type in (
            ClickType.PRODUCT_VIEW,
            ClickType.ADD_TO_CART,
            ClickType.PURCHASE,
        ):
            self.recent_items = [*self.recent_items, pid][-keep_items:]
        if event.type is ClickType.ADD_TO_CART and pid is not None and pid not in self.cart:
            self.cart = [*self.cart, pid][-MAX_CART:]
        elif event.type is ClickType.REMOVE_FROM_CART and pid in self.cart:
            self.cart = [p for p in self.cart if p != pid]
        elif event.type is ClickType.PURCHASE:
            self.purchases += 1
            self.cart = [p for p in self.cart if p != pid]

    def apply_text(self, p_positive: float) -> None:
        self.texts += 1
        if self.sentiment is None:
            self.sentiment = p_positive
        else:
            self.sentiment = (1 - SENTIMENT_ALPHA) * self.sentiment + SENTIMENT_ALPHA * p_positive
