"""murmur2 and the default partitioner agree with Kafka's Java client and kafka-python."""

from __future__ import annotations

import random

import pytest

from intentstream.stream.engine.partitioning import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed Java ints)
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("data, signed", JAVA_VECTORS.items())
def test_java_vectors(data, signed):
    assert murmur2(data) == signed & 0xFFFFFFFF


def test_same_as_kafka_python():
    from kafka.partitioner.default import murmur2 as reference

    rng = random.Random(1)
    for n in list(range(40)) + [100, 1000]:
        for _ in range(20):
            data = bytes(rng.randrange(256) for _ in range(n))
            assert murmur2(data) == reference(data)


def test_partition_for_matches_the_default_partitioner_rule():
    from kafka.partitioner.default import murmur2 as reference

    for i in range(500):
        key = f"u{i:06d}".encode()
        for n in (1, 3, 6, 12):
            assert partition_for(key, n) == (reference(key) & 0x7FFFFFFF) % n
    with pytest.raises(ValueError):
        partition_for(b"x", 0)
