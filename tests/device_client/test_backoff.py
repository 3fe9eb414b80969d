from __future__ import annotations

import random

from device_client import Backoff, TokenBucket


def test_backoff_doubles_capped_and_jittered() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not lockstep


def test_backoff_reset() -> None:
    backoff = Backoff(0.5, 60.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_token_bucket_paces() -> None:
    now = [0.0]
    bucket = TokenBucket(100.0, burst=100.0, clock=lambda: now[0])
    assert bucket.available() == 100.0
    bucket.spend(150)
    assert bucket.available() == -50.0
    assert bucket.wait_s(1) == 0.51
    now[0] += 1.0
    assert bucket.available() == 50.0
    now[0] += 10.0
    assert bucket.available() == 100.0  # capped at the burst
