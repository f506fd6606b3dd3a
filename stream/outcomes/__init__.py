"""Outcomes: what each decision achieved, and what the policy is worth.

:mod:`.record` (the outcome contract on ``actions.outcomes`` and the measured
population), :mod:`.attribution` (goals and windows per trigger), :mod:`.watch` (the
decisions of one user whose window is still open, kept in the user's record),
:mod:`.uplift` (uplift per trigger, strategy, channel and persona, with intervals),
:mod:`.render` (tables), :mod:`.backtest` (two policies on the same history)."""
