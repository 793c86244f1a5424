"""Input events: clickstream, chat and social. Keys: user id, conversation id, user id."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from streams.schemas.common import EventTime, Id, InputModel

Text = Annotated[str, StringConstraints(min_length=1)]


class ClickType(StrEnum):
    PAGE_VIEW = "page_view"
    SEARCH = "search"
    PRODUCT_VIEW = "product_view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    CHECKOUT_START = "checkout_start"
    PURCHASE = "purchase"


PRODUCT_EVENTS = frozenset(
    {ClickType.PRODUCT_VIEW, ClickType.ADD_TO_CART, ClickType.REMOVE_FROM_CART, ClickType.PURCHASE}
)


class ClickEvent(InputModel):
    """One interaction on the shop. Key: `user_id`."""

    event_id: Id
    user_id: Id
    session_id: Id
    ts: EventTime
    type: ClickType
    # int64, as the recommender takes it: a larger id passed validation, was stored in the user's
    # profile, and then failed every later recommender call for that user (an OverflowError).
    product_id: int | None = Field(default=None, gt=0, le=2**63 - 1)
    category: str | None = Field(default=None, max_length=64)
    price: float | None = Field(default=None, ge=0, le=1_000_000)
    quantity: int = Field(default=1, ge=1, le=1000)
    query: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _product_events_name_a_product(self) -> ClickEvent:
        if self.type in PRODUCT_EVENTS and self.product_id is None:
            raise ValueError(f"a {self.type.value} event needs product_id")
        return self

    @property
    def key(self) -> str:
        return self.user_id


class ChatMessage(InputModel):
    """A customer's message to customer service. Key: `user_id`, not the conversation: the
    user's profile (the reply context) is in the same partition."""

    message_id: Id
    conversation_id: Id
    user_id: Id
    ts: EventTime
    text: Text
    channel: str = Field(default="web", max_length=32)

    @property
    def key(self) -> str:
        """The user: their profile (reply context) lives in the same partition."""
        return self.user_id


class SocialPost(InputModel):
    """A public post mentioning a brand. Key: `user_id` (the author)."""

    post_id: Id
    user_id: Id
    brand: Id
    platform: str = Field(default="unknown", max_length=32)
    ts: EventTime
    text: Text

    @property
    def key(self) -> str:
        return self.user_id
