"""Agents' long-polls: bounded in number, woken by a change, cut off at their time."""

from __future__ import annotations

import asyncio
import threading
import time

from clusterplane.api.long_polls import LongPolls


def test_no_more_than_the_limit_wait_at_once():
    polls = LongPolls(limit=2, recheck_seconds=1.0)
    assert polls.try_enter() and polls.try_enter()
    assert not polls.try_enter()
    polls.leave()
    assert polls.try_enter()


def test_a_poll_answers_as_soon_as_a_change_is_announced_from_another_thread():
    polls = LongPolls(limit=10, recheck_seconds=30.0)
    generation = {"value": 3}

    async def read() -> int:
        return generation["value"]

    def publish() -> None:
        time.sleep(0.2)
        generation["value"] = 4
        polls.announce("h1")

    async def main() -> tuple[int, float]:
        started = time.monotonic()
        threading.Thread(target=publish).start()
        got = await polls.wait_past("h1", 3, seconds=20.0, read_generation=read)
        return got, time.monotonic() - started

    got, waited = asyncio.run(main())
    assert got == 4 and waited < 5.0


def test_a_poll_sees_other_replicas_writes_by_looking_again():
    polls = LongPolls(limit=10, recheck_seconds=0.05)
    reads = {"count": 0}

    async def read() -> int:
        reads["count"] += 1
        return 7 if reads["count"] >= 3 else 6

    got = asyncio.run(polls.wait_past("h1", 6, seconds=5.0, read_generation=read))
    assert got == 7


def test_a_poll_with_nothing_new_answers_when_its_time_is_up():
    polls = LongPolls(limit=10, recheck_seconds=0.05)

    async def read() -> int:
        return 2

    started = time.monotonic()
    assert asyncio.run(polls.wait_past("h1", 2, seconds=0.3, read_generation=read)) == 2
    assert 0.25 < time.monotonic() - started < 3.0
