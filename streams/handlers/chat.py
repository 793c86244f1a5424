"""chat -> cs-replies: one encoder pass per message gives intent and sentiment; then reply or hand off."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from streams.errors import BadInput, Reason, RetryableInference
from streams.handlers.common import Context, Outcome, Output, Record, TextRow, score_texts
from streams.labels import ModelVersion, model_ref
from streams.replies import VersionChanged, decide, reply_context, sentiment_of
from streams.schemas import ChatMessage, CsReply

log = logging.getLogger("streams.handlers.chat")


def check_text(text: str, limit: int) -> None:
    if len(text) > limit:
        raise BadInput(Reason.OVERSIZED, f"text is {len(text)} characters, limit {limit}")


# A version swap can answer a batch and its reply embeddings by two versions: score again.
SWAP_ATTEMPTS = 3


async def _scored_with_replies(
    records: Sequence[Record[ChatMessage]], ctx: Context
) -> tuple[list[tuple[Record[ChatMessage], TextRow]], list[Outcome], dict[ModelVersion, np.ndarray]]:
    """The batch scored, and the reply embeddings of every version that scored it (the same
    version embeds a message and the replies it is compared with)."""
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        scored, dead = await score_texts(records, ctx)
        try:
            embeddings = {
                v: await ctx.replies.embeddings(ctx.models, v)
                for v in sorted({row.model for _, row in scored})
            }
        except VersionChanged as exc:
            if attempt == SWAP_ATTEMPTS:
                raise RetryableInference(exc.wanted.name, "UNAVAILABLE", str(exc)) from exc
            log.info("text encoder version changed under a chat batch (%s): scoring it again", exc)
            continue
        return scored, dead, embeddings
    raise AssertionError("unreachable")


async def handle_chat(records: Sequence[Record[ChatMessage]], ctx: Context) -> list[Outcome]:
    topics = ctx.settings.topics
    scored, out, reply_embeddings = await _scored_with_replies(records, ctx)
    for record, row in scored:
        best = int(np.argmax(row.intent_probs))
        intent, confidence = row.labels.intents[best], float(row.intent_probs[best])
        sentiment = sentiment_of(row.p_positive, ctx.neutral_band(row.labels))
        msg = record.value
        # Chat is keyed by user id, like clickstream, so the user's profile is in this partition.
        profile = ctx.profiles.get(msg.user_id)
        context = reply_context(msg.text, profile)
        decision = decide(
            intent,
            confidence,
            sentiment,
            row.embedding,
            ctx.replies.catalogue,
            reply_embeddings[row.model],
            context,
        )
        reply = CsReply(
            reply_id=f"reply:{record.source.record_id}",
            conversation_id=msg.conversation_id,
            in_reply_to=msg.message_id,
            user_id=msg.user_id,
            intent=intent,
            intent_confidence=round(confidence, 4),
            sentiment=sentiment,
            action=decision.action,
            catalogue_reply_id=decision.reply_id,
            reply_text=decision.reply_text,
            handoff_queue=decision.handoff_queue,
            customer_segments=list(profile.get("segments", [])) if profile else [],
            reasons=decision.reasons,
            model=model_ref(row.model),
            source=record.source,
            ts=ctx.now(),
        )
        out.append(Output.of(topics.cs_replies, msg.conversation_id, reply))
    return out
