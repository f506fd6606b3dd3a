"""The closed-loop simulator behind ``intentstream simulate``: simulated users live planted
journeys, the engine decides in-process, and the users react to the messages they get.

* ``world`` — the planted world (``config/simulation.toml``, ``--world``): journeys, base
  conversions, effects per (trigger, strategy, channel), the users and their planned events
* ``reactions`` — what a user does about one decision (opens, clicks, dismissals,
  conversions), every draw a hash of (seed, action_id)
* ``loop`` — the driver: one :class:`~intentstream.stream.engine.partition.PartitionEngine`
  per simulated partition, events fed in event-time order, reactions fed back
* ``truth`` — the planted truth of a run (true effects on the treated, interference)
* ``calibration`` — does each uplift interval cover the planted truth?
"""
