"""clickstream and social -> segment-updates: update the user's profile, emit only on a change.

Segments are evaluated after every event, in partition order, so the updates a user gets do not
depend on how records happened to be batched. The recommender is called once per batch for all
the changes in it, with each user's item history as it was at the changing event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from streams.errors import RejectedInference
from streams.handlers.common import Context, Outcome, Output, Record, score_texts
from streams.inference import Recommendations
from streams.labels import ModelVersion, model_ref
from streams.profile import Profile
from streams.replies import sentiment_of
from streams.schemas import ClickEvent, Recommendation, ScoredPost, SegmentUpdate, SocialPost
from streams.segments import SegmentChange, evaluate

log = logging.getLogger("streams.handlers.segments")

TOP_K_IN_UPDATE = 5


@dataclass
class _Pending:
    record: Record[ClickEvent] | Record[SocialPost]
    user_id: str
    version: int
    change: SegmentChange
    history: list[int]
    extra_reasons: list[str]
    text_model: ModelVersion | None = None  # the encoder version whose score moved the user


def load_profile(ctx: Context, user_id: str) -> Profile:
    stored = ctx.profiles.get(user_id)
    return Profile.model_validate(stored) if stored else Profile()


class BatchProfiles:
    """The profiles one batch touches: each read from the table once and written back once. A
    user's session lands in one partition and mostly in one batch, so this saves a parse, a dump
    and a changelog record per event. Read, update and write happen with no `await` between
    them: the clickstream and social agents share the table, and an agent that waited between
    its read and its write would overwrite the other's update of the same user (a segment
    version went back in the compose suite when the write came after the recommender call)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._touched: dict[str, Profile] = {}

    def __getitem__(self, user_id: str) -> Profile:
        if user_id not in self._touched:
            self._touched[user_id] = load_profile(self._ctx, user_id)
        return self._touched[user_id]

    def write(self) -> None:
        for user_id, profile in self._touched.items():
            self._ctx.profiles[user_id] = profile.model_dump(mode="json")


def _commit(
    user_id: str,
    profile: Profile,
    record: Record,
    now: datetime,
    extra: list[str],
    pending: list[_Pending],
    text_model: ModelVersion | None = None,
) -> None:
    change = evaluate(profile, now)
    if change is not None:
        profile.segments = change.segments
        profile.segment_since = change.since
        profile.version += 1
        pending.append(
            _Pending(record, user_id, profile.version, change, list(profile.recent_items), extra, text_model)
        )


async def _emit(pending: list[_Pending], ctx: Context) -> list[Outcome]:
    if not pending:
        return []
    try:
        recs: Recommendations | None = await ctx.models.recommend([p.history for p in pending])
    except RejectedInference as exc:
        # A request Triton rejects would be rejected again: degrade to updates without
        # recommendations rather than dead-letter the batch's events.
        log.error("recommender rejected %d histories: %s", len(pending), exc)
        recs = None
    topic = ctx.settings.topics.segment_updates
    out: list[Outcome] = []
    for row, p in enumerate(pending):
        top = (
            []
            if recs is None
            else [
                Recommendation(product_id=int(item), score=round(float(score), 5))
                for item, score in zip(recs.items[row], recs.scores[row], strict=True)
                if int(item) > 0
            ][:TOP_K_IN_UPDATE]
        )
        update = SegmentUpdate(
            update_id=f"segment:{p.record.source.record_id}",
            user_id=p.user_id,
            version=p.version,
            segments=p.change.segments,
            entered=p.change.entered,
            exited=p.change.exited,
            reasons=[*p.change.reasons, *p.extra_reasons, *([] if recs else ["recommendations_unavailable"])],
            recommendations=top,
            model=None if recs is None else model_ref(recs.model),
            text_model=None if p.text_model is None else model_ref(p.text_model),
            source=p.record.source,
            ts=ctx.now(),
        )
        out.append(Output.of(topic, p.user_id, update))
    return out


async def handle_clicks(records: Sequence[Record[ClickEvent]], ctx: Context) -> list[Outcome]:
    pending: list[_Pending] = []
    profiles = BatchProfiles(ctx)
    for record in records:
        event = record.value
        profile = profiles[event.user_id]
        profile.apply_click(event, keep_items=ctx.settings.recent_items)
        _commit(event.user_id, profile, record, event.ts, [f"event:{event.type.value}"], pending)
    profiles.write()  # before any await: see BatchProfiles
    return await _emit(pending, ctx)


async def handle_social(records: Sequence[Record[SocialPost]], ctx: Context) -> list[Outcome]:
    scored_posts, out = await score_texts(records, ctx)
    pending: list[_Pending] = []
    profiles = BatchProfiles(ctx)
    for record, row in scored_posts:
        post = record.value
        p_positive = row.p_positive
        scored = ScoredPost(
            post_id=post.post_id,
            brand=post.brand,
            user_id=post.user_id,
            ts=post.ts,
            p_positive=round(p_positive, 5),
            sentiment=sentiment_of(p_positive, ctx.neutral_band(row.labels)).label,
            source=record.source,
            model=model_ref(row.model),
        )
        out.append(Output.of(ctx.settings.topics.social_scored, post.brand, scored))
        profile = profiles[post.user_id]
        profile.apply_text(p_positive, post.ts)
        _commit(
            post.user_id,
            profile,
            record,
            post.ts,
            [f"social:{post.brand}:p_positive={p_positive:.2f}"],
            pending,
            row.model,
        )
    profiles.write()  # before any await: see BatchProfiles
    return out + await _emit(pending, ctx)
