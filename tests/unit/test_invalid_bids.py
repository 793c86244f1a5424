"""A bid request that is dead-lettered but names its `id` is answered too (a no-bid), so the
exchange gets one answer per request; one that cannot say what it answers gets only its dead
letter. Driven through the decode path (`streams.pipeline.process`) with the bid route's hook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from producers.hostile import MUST_NOT_ECHO, corpus
from streams.campaigns import load_campaigns
from streams.dlq import HEADER_REASON, HEADER_STAGE, DeadLetter, RecordMeta
from streams.handlers.bids import answer_invalid_request, handle_bids
from streams.handlers.common import Context, Outcome, Output, Record
from streams.pipeline import Route, process
from streams.schemas import BidRequest, BidResponse
from streams.schemas.bids import NoBidReason
from tests.unit.test_handlers import make_ctx

BOOK = load_campaigns()


def bid_route(handler: Any = None) -> Route:
    ledger: dict[str, Any] = {}

    async def bids(records: Sequence[Record[BidRequest]], ctx: Context) -> list[Outcome]:
        return await handle_bids(records, ctx, BOOK, ledger)

    return Route("bids", BidRequest, handler or bids, on_invalid=answer_invalid_request)


def meta(offset: int, key: bytes | None = b"k") -> RecordMeta:
    return RecordMeta("bid-requests", 2, offset, key, ())


def split(outcomes: list[Outcome]) -> tuple[list[DeadLetter], list[Output]]:
    return (
        [o for o in outcomes if isinstance(o, DeadLetter)],
        [o for o in outcomes if isinstance(o, Output)],
    )


async def test_a_schema_invalid_request_with_an_id_gets_its_dead_letter_and_an_nbr_2() -> None:
    raw = orjson.dumps({"id": "req-7", "imp": "none", "user": {"id": "u3"}})
    dead, outputs = split(await process([(meta(41), raw)], bid_route(), make_ctx()))
    assert len(dead) == 1 and dead[0].value == raw and dead[0].topic == "bid-requests.dlq"
    assert dict(dead[0].headers)[HEADER_REASON] == b"schema_invalid"
    [out] = outputs
    assert (out.topic, out.key) == ("ad-bids", "u3")  # keyed by the user, like every answer
    response = BidResponse.model_validate(orjson.loads(out.value))
    assert (response.id, response.nbr, response.seatbid) == ("req-7", NoBidReason.INVALID_REQUEST, [])
    assert response.ext.response_id == "bid:bid-requests/2/41"
    assert (response.ext.source.topic, response.ext.source.partition, response.ext.source.offset) == (
        "bid-requests",
        2,
        41,
    )
    assert response.ext.reasons[0] == "schema_invalid"
    assert "imp" in response.ext.reasons[1] and "none" not in response.ext.reasons[1]  # path, not value


async def test_without_a_user_id_the_answer_is_keyed_by_the_request_id() -> None:
    raw = orjson.dumps({"id": "req-8", "imp": [{"id": "1"}], "schema_version": 99, "user": {"id": 5}})
    dead, outputs = split(await process([(meta(0), raw)], bid_route(), make_ctx()))
    assert dict(dead[0].headers)[HEADER_REASON] == b"unknown_schema_version"
    [out] = outputs
    response = BidResponse.model_validate(orjson.loads(out.value))
    assert (out.key, response.id, response.nbr) == ("req-8", "req-8", NoBidReason.INVALID_REQUEST)
    assert response.ext.reasons == ["unknown_schema_version"]  # its detail repeats the value sent


async def test_what_cannot_say_what_it_answers_gets_only_its_dead_letter() -> None:
    raws = [
        b"this is not json",
        b'["id", "req-1"]',
        orjson.dumps({"id": 12, "imp": []}),  # an id that is not a string
        orjson.dumps({"id": "   ", "imp": []}),  # blank, as BidRequest.id would refuse it
        orjson.dumps({"id": "x" * 129, "imp": []}),  # longer than any id we would echo
        orjson.dumps({"imp": [{"id": "1"}]}),
        None,  # a tombstone
        orjson.dumps({"id": "req-2", "imp": [{"id": "1"}], "pad": "x" * 70_000}),  # oversized: unparsed
    ]
    outcomes = await process([(meta(i), raw) for i, raw in enumerate(raws)], bid_route(), make_ctx())
    dead, outputs = split(outcomes)
    assert outputs == [] and [d.value for d in dead] == raws


async def test_a_request_the_handler_fails_on_is_answered_with_a_technical_error() -> None:
    async def broken(records: Sequence[Record[BidRequest]], ctx: Context) -> list[Outcome]:
        raise RuntimeError("a bug")

    raw = orjson.dumps({"id": "req-9", "imp": [{"id": "1", "banner": {"w": 1, "h": 1}}]})
    dead, outputs = split(await process([(meta(3), raw)], bid_route(broken), make_ctx()))
    assert [dict(d.headers)[HEADER_STAGE] for d in dead] == [b"handler"]
    response = BidResponse.model_validate(orjson.loads(outputs[0].value))
    assert (outputs[0].key, response.id, response.nbr) == ("req-9", "req-9", NoBidReason.TECHNICAL_ERROR)
    assert response.ext.reasons == ["processing_error"]  # never the exception's text


async def test_the_hostile_corpus_keeps_one_dead_letter_each_and_answers_those_with_an_id() -> None:
    """Every bad bid request of the hostile corpus still has exactly one dead letter; the ones
    that fail only the schema or its version, with their `id` intact, are answered with nbr 2.
    The expected kinds are read off the corpus (producers/hostile.py), not computed by the rule."""
    answered_kinds = {
        "unknown_schema_version",
        "schema_version_zero",
        "schema_version_string",
        "schema_version_float",
        "schema_version_bool",
        "schema_version_null",
        "duplicate_key",
        "too_many_imps",
        "huge_array_in_field",
        "duplicate_imp_ids",
        "tmax_over_uint64",
    }
    cases = [c for c in corpus("bid-requests", max_message_bytes=65_536) if not c.valid]
    ctx = make_ctx()
    answered = set()
    for offset, case in enumerate(cases):
        dead, outputs = split(await process([(meta(offset, case.key), case.value)], bid_route(), ctx))
        assert len(dead) == 1, case.kind
        for out in outputs:
            response = BidResponse.model_validate(orjson.loads(out.value))
            assert (response.id, response.nbr) == (case.ident, NoBidReason.INVALID_REQUEST), case.kind
            assert not any(needle.encode() in out.value for needle in MUST_NOT_ECHO), case.kind
            answered.add(case.kind)
    assert answered == answered_kinds
