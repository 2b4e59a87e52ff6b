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


def test_a_poll_is_woken_at_once_by_a_change_announced_from_another_thread():
    polls = LongPolls(limit=10, recheck_seconds=30.0)

    def publish() -> None:
        time.sleep(0.2)
        polls.announce("h2")  # another host: no effect
        polls.announce("h1")

    async def main() -> tuple[bool, float]:
        started = time.monotonic()
        threading.Thread(target=publish).start()
        woken = await polls.wait_past("h1", 3, seconds=20.0)
        return woken, time.monotonic() - started

    woken, waited = asyncio.run(main())
    assert woken and waited < 5.0


def test_one_watcher_reads_every_waiting_host_in_one_query_per_round():
    reads: list[list[str]] = []

    def read(hosts: list[str]) -> dict[str, int]:
        reads.append(hosts)
        return {"h1": 4, "h2": 1} if len(reads) >= 2 else {"h1": 3, "h2": 1}

    polls = LongPolls(limit=10, recheck_seconds=0.05, read_generations=read)

    async def main() -> list[bool]:
        return list(
            await asyncio.gather(
                polls.wait_past("h1", 3, seconds=5.0),
                polls.wait_past("h2", 1, seconds=0.5),
            )
        )

    assert asyncio.run(main()) == [True, False]  # h1 moved past 3; h2 never moved
    assert reads[0] == ["h1", "h2"]
    assert all(len(hosts) <= 2 for hosts in reads)


def test_a_poll_with_nothing_new_answers_when_its_time_is_up():
    polls = LongPolls(limit=10, recheck_seconds=0.05, read_generations=lambda hosts: {})
    started = time.monotonic()
    assert asyncio.run(polls.wait_past("h1", 2, seconds=0.3)) is False
    assert 0.25 < time.monotonic() - started < 3.0
