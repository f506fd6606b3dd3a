"""Decisions: from a fired trigger to what is sent. :mod:`.decider` (catalogue + ledger),
:mod:`.strategies` (the strategy catalogue), :mod:`.fatigue` (the fatigue ledger: caps,
fallback, cooldown, quiet hours, opt-out, holdout) and :mod:`.contract` (the output
contract of ``actions.*``)."""
