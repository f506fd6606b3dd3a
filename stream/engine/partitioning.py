"""Kafka's default partitioner for keyed records, as a pure function.

Java's ``Utils.murmur2`` (seed 0x9747b28c) and ``toPositive(murmur2(key)) % partitions``,
as used by the Java client, kafka-python and aiokafka for records with a key. The
offline runner uses it to put each user on the partition the live worker would see.

>>> murmur2(b"21") - (1 << 32)  # Java: Utils.murmur2("21".getBytes()) == -973932308
-973932308
>>> partition_for(b"21", 6)
0
"""

from __future__ import annotations

from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as an unsigned 32-bit int (Java's value & 0xffffffff)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[n4 + 2] << 16
    if rest >= 2:
        h ^= data[n4 + 1] << 8
    if rest >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a record with this key goes to: ``(murmur2(key) & 0x7fffffff) % n``."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
