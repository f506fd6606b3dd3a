"""Scoring a clustering against known labels (the benchmarks and tests use it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["adjusted_rand_index"]


def adjusted_rand_index(truth: Iterable[Any], predicted: Iterable[Any]) -> float:
    """Adjusted Rand index of two labelings of the same items (1 = identical partitions,
    about 0 = chance; label names do not matter).

    >>> adjusted_rand_index("aabb", [1, 1, 0, 0]), adjusted_rand_index("aaaa", [0, 0, 0, 0])
    (1.0, 1.0)
    >>> round(adjusted_rand_index("aabbcc", [0, 1, 0, 1, 0, 1]), 3)
    -0.364
    """
    pairs = list(zip(truth, predicted, strict=True))
    n = len(pairs)
    if n < 2:
        return 1.0

    def comb2(k: int) -> float:
        return k * (k - 1) / 2

    cells: dict[tuple[Any, Any], int] = {}
    rows: dict[Any, int] = {}
    cols: dict[Any, int] = {}
    for t, p in pairs:
        cells[(t, p)] = cells.get((t, p), 0) + 1
        rows[t] = rows.get(t, 0) + 1
        cols[p] = cols.get(p, 0) + 1
    index = sum(comb2(v) for v in cells.values())
    a = sum(comb2(v) for v in rows.values())
    b = sum(comb2(v) for v in cols.values())
    expected = a * b / comb2(n)
    top = (a + b) / 2
    if top == expected:
        return 1.0
    return (index - expected) / (top - expected)
