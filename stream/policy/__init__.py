"""Explore / exploit between strategies, learned from outcome records: the arm tally
(:mod:`.tally`) and the policy that reads it (:mod:`.chooser`)."""
