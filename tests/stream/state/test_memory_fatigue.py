"""What only the in-memory LedgerStore has: it pickles (a snapshot), and it forgets by event
time. The contract is test_fatigue_contract.py."""

from __future__ import annotations

import pickle

from intentstream.stream.contract.events import parse_ts
from intentstream.stream.decisions.fatigue import Candidate, FatigueLedger
from intentstream.stream.settings import FatigueSettings
from intentstream.stream.state.fatigue import DAY_MS, Limits
from intentstream.stream.state.memory import MemoryLedgerStore


def test_memory_store_pickles_and_continues_identically(make_candidates):
    cands = make_candidates(300, seed=3)
    ledger = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.05))
    head = [ledger.check(c) for c in cands[:150]]
    clone = FatigueLedger(pickle.loads(pickle.dumps(ledger.store)), FatigueSettings.defaults(holdout_share=0.05))
    tail_a = [ledger.check(c) for c in cands[150:]]
    tail_b = [clone.check(c) for c in cands[150:]]
    assert tail_a == tail_b
    straight = FatigueLedger(MemoryLedgerStore(), FatigueSettings.defaults(holdout_share=0.05))
    assert [straight.check(c) for c in cands] == head + tail_a


def test_memory_store_forgets_history_beyond_the_retention_horizon():
    store = MemoryLedgerStore()
    ledger = FatigueLedger(store, FatigueSettings.defaults(holdout_share=0.0))
    t0 = parse_ts("2026-01-01T12:00:00Z")
    for day in range(120):
        ledger.check(Candidate(f"a{day}", "u1", "churn_risk", t0 + day * DAY_MS, ("email",)))
    st = store.users["u1"]
    horizon_days = Limits.from_settings().ttl_ms // DAY_MS
    assert len(st.records) <= horizon_days + 1
    assert len(st.channels["email"]) <= horizon_days + 1
