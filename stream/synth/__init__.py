"""Synthetic test data with planted ground truth.

* ``clickstream`` — the generator's entry points: ``generate_lines``, ``generate_events``,
  ``generate_truth``, ``user_events`` (``intentstream generate`` is ``stream/cli/generate.py``)
* ``config`` — ``GeneratorConfig`` (what to generate), ``GenerationStats`` (what a run counted),
  the default persona mix
* ``personas`` — persona quotas and activity models; which sessions carry each persona's journeys
* ``users`` — one synthetic user: attributes drawn from its seed, its sessions in order
* ``session_scripts`` — the events of each kind of session (browse, purchase, cart, KYC, …)
* ``delivery`` — event ids and ts, late, duplicate and invalid deliveries, delivery order
  (time, or a dump grouped by user)
* ``realworld`` — retried uploads with new ids, offline flushes, cross-device sessions (off by default)
* ``truth`` — the journeys in a user's events and its ground-truth record
* ``segments`` — synthetic closed segments, without a clickstream (persona model tests)
"""
