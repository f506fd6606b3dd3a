"""Ops monitoring, the pure part: no network here. ``agents/monitoring.py`` collects a
worker snapshot, feeds it through these and publishes the results.

* :mod:`.snapshot` — what a report is built from (:class:`~.snapshot.WorkerSnapshot`),
  partition lag, readiness (``/health``);
* :mod:`.metrics` — the ``ops.metrics`` record (counters, deltas, rates, breakdowns);
* :mod:`.alerts` — the anomaly alert rules and the ``ops.alerts`` records;
* :mod:`.prometheus` — the Prometheus text exposition (``/metrics``).
"""
