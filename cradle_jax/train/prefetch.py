"""Build the next batches on the host while the device runs the current step (issue 9).

Densifying a CSR block, the reference medians and the transfer to the devices happen in a
background thread, up to `size` batches ahead, so the train step does not wait for them. The
items and their order are those of the wrapped iterator: prefetching changes timing only.
"""

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

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
