"""chat -> cs-replies: one encoder pass per message gives intent and sentiment; then reply or hand off."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streams.errors import BadInput, Reason
from streams.handlers.common import Context, Outcome, Output, Record, score_texts
from streams.replies import decide, reply_context, sentiment_of
from streams.schemas import ChatMessage, CsReply


def check_text(text: str, limit: int) -> None:
    if len(text) > limit:
        raise BadInput(Reason.OVERSIZED, f"text is {len(text)} characters, limit {limit}")


async def handle_chat(records: Sequence[Record[ChatMessage]], ctx: Context) -> list[Outcome]:
    topics = ctx.settings.topics
    scored, out = await score_texts(records, ctx)
    reply_embeddings = await ctx.replies.embeddings(ctx.models)
    for record, row in scored:
        best = int(np.argmax(row.intent_probs))
        intent, confidence = ctx.labels.intents[best], float(row.intent_probs[best])
        sentiment = sentiment_of(row.p_positive, ctx.neutral_band)
        msg = record.value
        # Chat is keyed by user id, like clickstream, so the user's profile is in this partition.
        profile = ctx.profiles.get(msg.user_id)
        context = reply_context(msg.text, profile)
        decision = decide(
            intent, confidence, sentiment, row.embedding, ctx.replies.catalogue, reply_embeddings, context
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
            source=record.source,
            ts=ctx.now(),
        )
        out.append(Output.of(topics.cs_replies, msg.conversation_id, reply))
    return out
