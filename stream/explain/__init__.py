"""Why did this user get this? One user's timeline, from the engine's own outputs.

``intentstream explain USER_ID`` (:mod:`intentstream.stream.cli.explain`) answers a
support question — "why did I get this SMS?" — from what the engine published and from
the user's own events:

* :mod:`.trace` — the user's events and the engine's outputs about them (segments,
  ``actions.audit``, ``actions.outcomes``): offline from a clickstream file, through the
  same :class:`~intentstream.stream.engine.offline.OfflineRunner` as ``replay --offline``
  (so the decisions are the live worker's), or live from Kafka and Redis (:mod:`.live`);
* :mod:`.timers` — the trigger timers the user's events armed, moved, cancelled or fired,
  recomputed with the pure trigger rules;
* :mod:`.checks` — every decision's checks (opt-outs, cooldown, quiet hours, send time,
  channel and global caps with their counters, priority, holdout, coupon), recomputed
  from the user's own audit records with the fatigue ledger's own rule functions;
* :mod:`.story` — all of it in event-time order (:class:`~.story.Explanation`), and
  :mod:`.text` / :mod:`.html` to read it.

Nothing here is instrumented into the engine: it reads outputs and re-runs pure stages.
"""
