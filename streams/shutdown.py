"""How the worker stops itself: loudly, with exit code 70, and never by committing what it has not
finished. A supervisor (docker's restart policy) restarts it, and the new worker reads again from
the committed offsets. See docs/design/delivery.md."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from typing import NoReturn

log = logging.getLogger("streams.shutdown")

EXIT_FATAL = 70  # EX_SOFTWARE
FATAL_EXIT_GRACE_S = 20.0


@dataclass
class Health:
    """Why the worker stopped itself, if it did: the process then exits with EXIT_FATAL."""

    fatal: BaseException | None = None


def hard_exit() -> NoReturn:
    """Exit now, without Faust's shutdown (which commits): safe, nothing uncommitted is lost."""
    log.critical("exiting hard (code %d), committing nothing more", EXIT_FATAL)
    logging.shutdown()
    os._exit(EXIT_FATAL)


def stop_loudly(health: Health, why: BaseException) -> None:
    """Record `why` and start Faust's clean shutdown (SIGTERM), which commits only acknowledged
    offsets; exit hard after FATAL_EXIT_GRACE_S if that shutdown hangs."""
    health.fatal = why
    os.kill(os.getpid(), signal.SIGTERM)
    asyncio.get_running_loop().call_later(FATAL_EXIT_GRACE_S, hard_exit)
