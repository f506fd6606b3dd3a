"""The ``intentstream`` subcommands that talk to Kafka and Redis, one module per command,
each with ``register(subparsers)`` (see :mod:`intentstream.stream.cli`):

* :mod:`.topics` — create the product's topics;
* :mod:`.worker` — run the Faust worker;
* :mod:`.personas` — run the personas single writer;
* :mod:`.replay` — replay a JSONL clickstream into Kafka (``--to-kafka``; ``--offline``
  is dispatched to :mod:`intentstream.stream.cli.replay_offline`);
* :mod:`.tail` — print a topic's records;
* :mod:`.stats` — a live table of the workers' ``ops.metrics`` records.
* :mod:`.resume` — what the circuit breakers hold; release or discard it.

What several commands share: :mod:`.topic_reading` (group-less reads up to the ends
captured at the start), :mod:`.kafka_errors` (a Kafka failure as one line and exit
status 1); what ``replay`` is made of: :mod:`.pacing`, :mod:`.in_flight`,
:mod:`.retention`. Shared with the offline commands: terminal detection, colour and the
progress line (:mod:`intentstream.stream.cli.terminal`,
:mod:`intentstream.stream.cli.progress`) and the input reader (``--sort``, the disorder
check: :mod:`intentstream.stream.cli.offline_files`). The Kafka clients come from
:mod:`intentstream.agents.kafka`, the short topic names from
:mod:`intentstream.agents.topic_names`.

Network code lives here, not in ``stream/``; the client libraries are imported only when
a command runs, so ``intentstream --help`` and the offline commands never load them.
"""
