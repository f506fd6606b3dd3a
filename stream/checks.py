"""Shared checks for policies, in the spirit of River's ``checks``: run them against every
implementation of a rule or a store.

A *policy* here is anything built fresh by a factory and fed inputs one at a time
(``policy(item) -> output``): a fatigue ledger over a new store, a decider, a trigger rule.

>>> from intentstream.stream.decisions.fatigue import Candidate, FatigueLedger
>>> from intentstream.stream.state.memory import MemoryLedgerStore
>>> def fresh():
...     return FatigueLedger(MemoryLedgerStore()).check
>>> cands = [Candidate(f"a{i}", f"u{i % 3}", "churn_risk", 1767607200000 + i * 3_600_000, ("push", "email"))
...          for i in range(12)]
>>> outs = check_deterministic(fresh, cands)
>>> len(outs), check_idempotent(fresh, cands)
(12, None)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from intentstream.stream import codec

Policy = Callable[[Any], Any]


def _canonical(value: Any) -> bytes:
    """A byte form for comparing outputs (dataclasses, decisions and plain JSON values)."""
    if hasattr(value, "decision") and hasattr(value, "duplicate"):  # intentstream.stream.decisions.decider.Outcome
        return codec.dumps([value.decision.to_dict(), value.duplicate])
    if hasattr(value, "to_dict"):
        return codec.dumps(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return repr(value).encode()  # dataclass reprs are deterministic and include bytes fields
    return codec.dumps(value)


def run_policy(make: Callable[[], Policy], inputs: Sequence[Any]) -> list[Any]:
    """Feed ``inputs`` in order to a fresh policy and collect its outputs."""
    policy = make()
    return [policy(item) for item in inputs]


def check_deterministic(make: Callable[[], Policy], inputs: Sequence[Any], runs: int = 2) -> list[Any]:
    """Assert the policy is pure and deterministic: fresh instances fed the same inputs give
    byte-identical outputs, and the inputs are left unchanged. Returns the first run's
    outputs."""
    before = copy.deepcopy(list(inputs))
    first = run_policy(make, inputs)
    expected = [_canonical(o) for o in first]
    for n in range(1, runs):
        again = [_canonical(o) for o in run_policy(make, inputs)]
        for i, (a, b) in enumerate(zip(expected, again, strict=True)):
            assert a == b, f"run {n + 1} differs at input {i}: {a!r} != {b!r}"
    assert list(inputs) == before, "the policy modified its inputs"
    return first


def check_idempotent(make: Callable[[], Policy], inputs: Sequence[Any]) -> None:
    """Assert that feeding every input twice in a row gives the original output twice, the
    second flagged ``duplicate`` (when outputs have that flag), and that later outputs are
    the same as without the repetition: a redelivery changes nothing."""
    plain = [_canonical(_undup(o)) for o in run_policy(make, inputs)]
    policy = make()
    for i, item in enumerate(inputs):
        first, second = policy(item), policy(item)
        assert _canonical(_undup(first)) == plain[i], f"input {i}: differs when inputs repeat"
        assert _canonical(_undup(second)) == plain[i], f"input {i}: the repeat changed the output"
        if hasattr(second, "duplicate"):
            assert second.duplicate and not first.duplicate, f"input {i}: duplicate flag wrong"


def _undup(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "duplicate") and value.duplicate:
        return dataclasses.replace(value, duplicate=False)
    return value
