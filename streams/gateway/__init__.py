"""The OpenRTB 2.6 HTTP bidder gateway (`python -m streams gateway`).

Exchanges POST BidRequests over HTTP; decisions live in the Faust worker that owns the user's
partition (budgets, caps, pacing are partition-scoped), so the gateway forwards each request to
it over Kafka and answers from its reply (`streams.replyto`), within the request's tmax. It also
takes the win, billing and loss notices of our bids and writes them to ad-events.

Modules: `server` (aiohttp app, bounds, health, entry point), `bids` (one request, the reply or
the deadline), `notices` (verification, replays), `pending` (requests awaiting replies), `bus`
(the Kafka clients), `metrics`.
"""
