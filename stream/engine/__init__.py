"""The engine: composes the stages, sessions → triggers → decisions.

* :mod:`.timeline` — one user's stages in event-time order (the straight event path);
* :mod:`.partition` — one Kafka partition: batches, the per-user records
  (:mod:`.user_state`), the watermark, the store commit and the outbox;
* :mod:`.watermark` — the idle-partition rule, shared by the live worker and
  :mod:`.offline`, the offline runner (simulated partitions, :mod:`.partitioning`).
"""
