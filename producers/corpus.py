"""Texts for generated chat and social events: realistic customer phrasing, written for this repo."""

from __future__ import annotations

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
