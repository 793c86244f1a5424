"""The HTTP requests waiting for their worker's answer, by correlation id.

Everything here runs on the event loop's thread (the reply consumer hands its records over
with `call_soon_threadsafe`), so "deliver" and "give up at the deadline" cannot interleave: a
request is answered by whichever comes first, exactly once, and a reply that finds no one
waiting is late.
"""

from __future__ import annotations

import asyncio
import itertools


class Pending:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._ids = itertools.count(1)

    def open(self) -> tuple[str, asyncio.Future[bytes]]:
        """A new correlation id and the future its reply resolves."""
        corr = str(next(self._ids))
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[corr] = future
        return corr, future

    def deliver(self, corr: str, value: bytes) -> bool:
        """Hand a reply to its request; False when no one waits for it any more (late)."""
        future = self._waiting.pop(corr, None)
        if future is None or future.done():
            return False
        future.set_result(value)
        return True

    def fail(self, corr: str, exc: BaseException) -> None:
        """The request could not be forwarded: its waiter stops waiting."""
        future = self._waiting.pop(corr, None)
        if future is not None and not future.done():
            future.set_exception(exc)

    def close(self, corr: str) -> None:
        """The request is answered (or gave up): a reply that comes now is late."""
        self._waiting.pop(corr, None)

    def __len__(self) -> int:
        return len(self._waiting)
