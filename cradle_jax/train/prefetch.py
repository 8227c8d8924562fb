"""Build the next batches on the host while the device runs the current step, and measure how
long the training loop still waits for them.

Densifying a CSR block, the reference medians and the transfer to the devices happen in a
background thread, up to `size` batches ahead, so the train step does not wait for them; the
batches themselves are built by several threads at once (`ordered_map`), which is what keeps a
backed file's reads (one `os.pread` per row, which releases the GIL) ahead of a fast step. The
items and their order are those of the wrapped iterator: prefetching changes timing only.
"""

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterator[T], size: int) -> Iterator[T]:
    """The items of `items`, produced up to `size` ahead in a thread; `size` 0 passes them through.

    An exception in the producer is raised in the consumer at the item where it happened; a
    consumer that stops early (a `break`, an error) stops the producer too.
    """
    if size <= 0:
        yield from items
        return
    ready: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            put(_Failure(error))
            return
        put(_END)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def ordered_map(function: Callable[[T], R], items: Iterator[T], workers: int) -> Iterator[R]:
    """function(item) for each item, in order, computed on `workers` threads with at most
    `workers` results ahead of the consumer; one worker computes them in the caller's thread."""
    if workers <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="batches") as executor:
        pending = deque()
        try:
            for item in items:
                pending.append(executor.submit(function, item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class WaitClock:
    """The seconds a loop spends blocked on its next item: for a training loop, the time the
    input pipeline keeps it from handing the device its next step."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, items: Iterator[T]) -> Iterator[T]:
        """The items of `items`, each wait for one added to `seconds`."""
        items = iter(items)
        while True:
            started = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - started
            yield item
