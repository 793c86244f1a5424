"""A seeded exchange for the bidder: the auction model (`model`), an accelerated simulated day
through the worker's own handlers (`day`), and live HTTP traffic against the gateway (`live`)."""
