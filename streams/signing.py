"""Signed notice URLs: the `nurl`, `burl` and `lurl` of every bid, and their verification.

A notice moves money (a billing notice books spend, a loss notice frees a reservation), so anyone
who can reach the notice endpoint must not be able to make one up. Each URL carries what we bid
(bid id, imp, campaign, user key, partition, price, time, auction type) and an HMAC-SHA256 over
those values *and the notice kind*, so a win URL cannot be turned into a billing URL. The key has
an id (`kid`) in the URL: keys rotate by adding a new one, making it current, and removing the old
one once no bid signed with it can still get a notice (the notice timeout).

The exchange's values arrive through the OpenRTB 2.6 substitution macros (section 4.4) that we
append unsigned; `AUDIT` in place of a value means an audit or test render, never charged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from streams.errors import ScorerError
from streams.schemas.adevents import AdEvent, NoticeKind

SIGNATURE_VERSION = "v1"
AUDIT = "AUDIT"
# Macros we ask for, by query parameter: the exchange substitutes them when it calls the URL.
MACROS = {
    "price": "${AUCTION_PRICE}",
    "loss": "${AUCTION_LOSS}",
    "mtw": "${AUCTION_MIN_TO_WIN}",
    "aid": "${AUCTION_ID}",
    "abid": "${AUCTION_BID_ID}",
    "aimp": "${AUCTION_IMP_ID}",
    "cur": "${AUCTION_CURRENCY}",
}
SIGNED = ("b", "i", "c", "u", "p", "bp", "t", "at")


class NoticeRejected(ScorerError):
    """A notice URL that is not ours, was changed, or cannot be read."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # unsigned | unknown_key | bad_signature | malformed
        self.detail = detail


@dataclass(frozen=True)
class Ticket:
    """What we signed when we bid."""

    bid_id: str
    imp_id: str
    campaign: str
    user: str
    partition: int
    bid_price: float  # CPM
    issued_ms: int
    auction_type: int

    def event(self, kind: NoticeKind, received: datetime, **exchange: Any) -> AdEvent:
        """The notice of this bid for `ad-events`: the signed values, and the exchange's
        (`price`, `loss`, `min_to_win`, `audit`)."""
        return AdEvent(
            kind=kind,
            bid_id=self.bid_id,
            imp_id=self.imp_id,
            campaign=self.campaign,
            user=self.user,
            partition=self.partition,
            bid_price=self.bid_price,
            issued_ms=self.issued_ms,
            auction_type=self.auction_type,
            received=received,
            **exchange,
        )

    def fields(self) -> dict[str, str]:
        return {
            "b": self.bid_id,
            "i": self.imp_id,
            "c": self.campaign,
            "u": self.user,
            "p": str(self.partition),
            "bp": format_price(self.bid_price),
            "t": str(self.issued_ms),
            "at": str(self.auction_type),
        }


def format_price(cpm: float) -> str:
    """The one text form of a price that is signed (4 decimals, as the bidder rounds prices)."""
    return f"{cpm:.4f}"


def _message(kind: NoticeKind, kid: str, fields: Mapping[str, str]) -> bytes:
    parts = [SIGNATURE_VERSION, kind.value, kid, *(fields[name] for name in SIGNED)]
    # Lengths first: no value can be shifted into its neighbour by moving a separator.
    return "|".join(f"{len(p)}:{p}" for p in parts).encode()


class NoticeSigner:
    """Signs with the current key, verifies with any key it holds."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"the current notice key {current!r} is not among the keys {sorted(keys)}")
        if any(len(k) < 16 for k in keys.values()):
            raise ValueError("notice keys must be at least 16 bytes")
        self._keys = dict(keys)
        self.current = current

    def signature(self, kind: NoticeKind, kid: str, fields: Mapping[str, str]) -> str:
        mac = hmac.new(self._keys[kid], _message(kind, kid, fields), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def url(self, base: str, kind: NoticeKind, ticket: Ticket) -> str:
        """`<base>/<kind>?<signed fields>&kid=..&sig=..&<macros>`; our values are percent-encoded,
        the macros are left as the exchange must find them."""
        fields = ticket.fields()
        sig = self.signature(kind, self.current, fields)
        ours = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())
        macros = "&".join(f"{k}={v}" for k, v in MACROS.items())
        return f"{base.rstrip('/')}/{kind.value}?{ours}&kid={quote(self.current, safe='')}&sig={sig}&{macros}"

    def verify(self, kind: NoticeKind, query: Mapping[str, str]) -> Ticket:
        """The ticket of a notice whose signature holds; raises NoticeRejected otherwise."""
        sig, kid = query.get("sig"), query.get("kid")
        if not sig or not kid:
            raise NoticeRejected("unsigned")
        if kid not in self._keys:
            raise NoticeRejected("unknown_key", kid[:32])
        missing = [name for name in SIGNED if name not in query]
        if missing:
            raise NoticeRejected("malformed", "missing " + ",".join(missing))
        fields = {name: query[name] for name in SIGNED}
        if not hmac.compare_digest(sig, self.signature(kind, kid, fields)):
            raise NoticeRejected("bad_signature")
        try:
            ticket = Ticket(
                bid_id=fields["b"],
                imp_id=fields["i"],
                campaign=fields["c"],
                user=fields["u"],
                partition=int(fields["p"]),
                bid_price=float(fields["bp"]),
                issued_ms=int(fields["t"]),
                auction_type=int(fields["at"]),
            )
        except ValueError as exc:  # signed by us, so only a key leak or a bug gets here
            raise NoticeRejected("malformed", str(exc)) from None
        return ticket


def macro_value(query: Mapping[str, str], name: str) -> str | None:
    """A substituted macro: None when absent, empty, or left unsubstituted (`${...}`)."""
    value = query.get(name)
    if value is None or value == "" or value.startswith("${"):
        return None
    return value


def macro_price(query: Mapping[str, str], name: str) -> float | None:
    """A CPM macro (`price`, `mtw`): None when absent or AUDIT; NoticeRejected when not a
    finite non-negative number."""
    value = macro_value(query, name)
    if value is None or value == AUDIT:
        return None
    try:
        price = float(value)
    except ValueError:
        raise NoticeRejected("malformed", f"{name} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise NoticeRejected("malformed", f"{name} must be a finite price >= 0")
    return price


def is_audit(query: Mapping[str, str]) -> bool:
    return any(query.get(name) == AUDIT for name in MACROS)
