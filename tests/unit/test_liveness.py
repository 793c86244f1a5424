"""The stall detector behind the worker's liveness check (pure logic, a fake clock)."""

from __future__ import annotations

import pytest

from streams.liveness import LivenessCheck
from streams.settings import Settings

P = ("chat", 0)


def test_input_waiting_without_progress_stalls_after_the_limit() -> None:
    check = LivenessCheck(stall_s=30)
    assert check.observe(P, highwater=100, log_start=0, processed=50, committed=50, now=0) is None
    assert check.observe(P, highwater=120, log_start=0, processed=50, committed=50, now=29) is None
    stall = check.observe(P, highwater=120, log_start=0, processed=50, committed=50, now=30)
    assert stall is not None and stall.waiting == 70 and stall.seconds == 30
    assert str(stall) == "chat[0]: 70 records waiting, no progress for 30s"


def test_progress_in_processing_or_committing_resets_the_clock() -> None:
    check = LivenessCheck(stall_s=30)
    check.observe(P, highwater=100, log_start=0, processed=50, committed=50, now=0)
    assert check.observe(P, highwater=100, log_start=0, processed=55, committed=50, now=25) is None
    assert check.observe(P, highwater=100, log_start=0, processed=55, committed=55, now=50) is None
    assert check.observe(P, highwater=100, log_start=0, processed=55, committed=55, now=79) is None
    assert check.observe(P, highwater=100, log_start=0, processed=55, committed=55, now=80) is not None


def test_a_quiet_partition_never_stalls() -> None:
    check = LivenessCheck(stall_s=30)
    for now in range(0, 600, 5):
        assert check.observe(P, highwater=80, log_start=0, processed=80, committed=80, now=now) is None
    # never committed nor taken, and nothing past the log start (retention removed it all)
    for now in range(0, 600, 5):
        assert (
            check.observe(("bids", 1), highwater=7, log_start=7, processed=None, committed=None, now=now)
            is None
        )


def test_a_partition_that_never_fetches_stalls() -> None:
    # faust-streaming#629: assigned, never fetched, never committed; the log start is all we know
    check = LivenessCheck(stall_s=10)
    check.observe(P, highwater=30, log_start=0, processed=None, committed=None, now=0)
    stall = check.observe(P, highwater=30, log_start=0, processed=None, committed=None, now=10)
    assert stall is not None and stall.waiting == 30


def test_an_unknown_committed_offset_counts_from_the_log_start() -> None:
    check = LivenessCheck(stall_s=10)
    check.observe(P, highwater=30, log_start=12, processed=None, committed=-1, now=0)
    stall = check.observe(P, highwater=30, log_start=12, processed=None, committed=-1, now=10)
    assert stall is not None and stall.waiting == 18


def test_processed_but_never_committed_stalls() -> None:
    check = LivenessCheck(stall_s=10)
    check.observe(P, highwater=90, log_start=0, processed=90, committed=60, now=0)
    stall = check.observe(P, highwater=90, log_start=0, processed=90, committed=60, now=10)
    assert stall is not None and stall.waiting == 30
    # the commit catching up is progress, and then nothing is waiting
    assert check.observe(P, highwater=90, log_start=0, processed=90, committed=90, now=11) is None
    assert check.observe(P, highwater=90, log_start=0, processed=90, committed=90, now=60) is None


def test_revoked_partitions_are_forgotten() -> None:
    check = LivenessCheck(stall_s=10)
    check.observe(P, highwater=5, log_start=0, processed=None, committed=None, now=0)
    check.forget(set())
    assert check.observe(P, highwater=5, log_start=0, processed=None, committed=None, now=10) is None


def test_the_stall_limit_must_exceed_the_triton_retry_budget() -> None:
    with pytest.raises(ValueError, match="liveness_stall_s"):
        Settings(liveness_stall_s=30, triton_retry_max_s=60)
