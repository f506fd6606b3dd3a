"""The event contract: what a clickstream event must look like (:mod:`.events`:
``parse_event``, the one parser of Kafka messages and file lines, and its reason codes)
and what is kept of one that does not (:mod:`.dead_letter`)."""
