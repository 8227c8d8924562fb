"""Prefetching batches in a thread changes timing only: same items, same order, same errors."""

import threading
import time

import pytest

from cradle_jax.train.prefetch import WaitClock, ordered_map, prefetch


def counting(n: int, produced: list[int], fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"bad batch {i}")
        produced.append(i)
        yield i


@pytest.mark.parametrize("size", [0, 1, 3])
def test_same_items_in_the_same_order(size):
    assert list(prefetch(counting(10, []), size)) == list(range(10))


def test_producer_runs_ahead_by_at_most_size():
    produced = []
    items = prefetch(counting(10, produced), 2)
    assert next(items) == 0
    deadline = time.monotonic() + 10
    while len(produced) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    # item 0 is out, two wait in the queue, one more is held by the blocked producer
    assert len(produced) == 4
    assert list(items) == list(range(1, 10))


def test_an_error_is_raised_at_its_item():
    seen = []
    with pytest.raises(ValueError, match="bad batch 3"):
        seen.extend(prefetch(counting(10, [], fail_at=3), 2))
    assert seen == [0, 1, 2]


def test_stopping_early_stops_the_producer():
    produced = []
    for item in prefetch(counting(1000, produced), 2):
        if item == 1:
            break
    assert not any(t.name == "prefetch" for t in threading.enumerate())
    assert len(produced) <= 5


def test_the_wait_clock_counts_the_time_spent_waiting_for_each_item():
    def slow(n: int, seconds: float):
        for i in range(n):
            time.sleep(seconds)
            yield i

    clock = WaitClock()
    started = time.perf_counter()
    items = []
    for item in clock.timed(slow(4, 0.05)):
        items.append(item)
        time.sleep(0.05)  # the consumer's own work is not waiting
    total = time.perf_counter() - started
    assert items == [0, 1, 2, 3]
    assert 0.2 <= clock.seconds < total - 0.2


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_ordered_map_keeps_the_order_of_uneven_work(workers):
    def slow_square(i: int) -> int:
        time.sleep(0.02 if i % 3 == 0 else 0.0)  # later items finish first
        return i * i

    assert list(ordered_map(slow_square, iter(range(12)), workers)) == [i * i for i in range(12)]


def test_ordered_map_works_in_parallel_and_no_further_ahead_than_its_workers():
    started, running, most = [], [0], [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i

    results = ordered_map(work, iter(range(20)), workers=3)
    assert next(results) == 0
    time.sleep(0.2)
    assert len(started) == 3  # 0 taken, 1 and 2 done or running: nothing more until asked
    assert list(results) == list(range(1, 20))
    assert most[0] >= 2


def test_ordered_map_raises_the_error_of_its_item():
    def fail_at_5(i: int) -> int:
        if i == 5:
            raise ValueError("bad batch 5")
        return i

    seen = []
    with pytest.raises(ValueError, match="bad batch 5"):
        seen.extend(ordered_map(fail_at_5, iter(range(10)), workers=2))
    assert seen == [0, 1, 2, 3, 4]
