"""Triggers: the moments that matter, detected on event time (:mod:`.rules`: immediate
rules, event-time timers, feedback and the regret streak). Pure: no I/O, no clock."""
