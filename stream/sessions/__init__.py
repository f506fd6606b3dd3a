"""Sessions: the event-time sessionizer (:mod:`.sessionizer`: reorder buffer, dedup,
sessions, late events), intent segments and their labels (:mod:`.segments`) and the
long-lived user profile (:mod:`.profiles`). Pure: no I/O, no clock, no triggers."""
