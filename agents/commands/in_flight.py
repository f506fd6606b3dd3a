"""The bounded window of records a producer has sent and Kafka has not acknowledged yet
(``replay --to-kafka``'s back-pressure and delivery counts)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any


#: Default bound on records sent but not yet acknowledged (back-pressure).
MAX_IN_FLIGHT_RECORDS = 20_000
#: Default bound on their bytes.
MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024


class InFlight:
    """The futures of records sent and not yet settled, oldest first, in a bounded window.

    When the window holds more than ``max_records`` records or ``max_bytes`` bytes,
    :meth:`add` waits for the oldest until half of either is left: the reader pauses
    while the producer keeps the other half on the wire (back-pressure; kafka-python
    3.x's accumulator itself is unbounded). Settled futures become counts and are
    dropped, so memory stays bounded whatever the file size.
    """

    def __init__(self, topic: str, max_records: int = MAX_IN_FLIGHT_RECORDS, max_bytes: int = MAX_IN_FLIGHT_BYTES) -> None:
        self.topic = topic
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.window: deque[tuple[Any, int, int]] = deque()  # (future, bytes, expected partition or -1)
        self.bytes = 0
        self.acked_by_partition: Counter[int] = Counter()
        self.acked_other = 0  # dead-letter records
        self.failures = 0
        self.first_error: BaseException | None = None
        self.misplaced = 0  # --partitions-check: records off the partition expected

    def add(self, future: Any, size: int, expected_partition: int = -1, tick: Callable[[], None] | None = None) -> None:
        """Track one record handed to ``producer.send``; wait if the window is full."""
        self.window.append((future, size, expected_partition))
        self.bytes += size
        if len(self.window) > self.max_records or self.bytes > self.max_bytes:
            self.settle(self.max_records // 2, self.max_bytes // 2, tick)

    def settle(self, records: int = 0, nbytes: int = 0, tick: Callable[[], None] | None = None) -> None:
        """Wait for the oldest records until at most ``records`` / ``nbytes`` are in flight."""
        from kafka.errors import KafkaTimeoutError

        window = self.window
        while window and (len(window) > records or self.bytes > nbytes):
            future, size, expected = window[0]
            if not future.is_done:
                try:
                    future.get(timeout=0.25)
                except KafkaTimeoutError:
                    if not future.is_done:  # still waiting, not a delivery timeout
                        if tick is not None:
                            tick()
                        continue
                except Exception:  # noqa: BLE001 - a failed delivery; counted below
                    pass
            window.popleft()
            self.bytes -= size
            self._count(future, expected)

    def _count(self, future: Any, expected: int) -> None:
        if future.exception is not None:
            self.failures += 1
            self.first_error = self.first_error or future.exception
            return
        meta = future.value
        if meta.topic != self.topic:
            self.acked_other += 1
            return
        self.acked_by_partition[meta.partition] += 1
        if expected >= 0 and meta.partition != expected:
            self.misplaced += 1

    def give_up(self, reason: str) -> None:
        """Count every record still unsettled as failed (the producer is closing)."""
        from kafka.errors import KafkaTimeoutError

        while self.window:
            future, size, expected = self.window.popleft()
            self.bytes -= size
            if future.is_done:
                self._count(future, expected)
            else:
                self.failures += 1
                self.first_error = self.first_error or KafkaTimeoutError(reason)

    @property
    def acked_main(self) -> int:
        return sum(self.acked_by_partition.values())
