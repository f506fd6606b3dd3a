"""Events in, from where they already are: other tools' exports and message formats
turned into event-contract events by *mapping tables*.

One mechanism serves every source: a mapping (:class:`~intentstream.stream.ingest.mapping.Mapping`)
names, for each contract field, the source column or JSON path it comes from, how the
source writes time, and which source event types become which contract types. The
built-in presets (Segment / RudderStack, Taobao UserBehavior, REES46, RetailRocket) are
such tables, in ``config/imports.toml``; a user's own CSV or JSONL export needs only a
mapping file of the same shape.

========================  ==================================================================
``mapping``               a mapping table compiled and applied to one source record
``presets``               the built-in tables, and a user's mapping file laid over one
``readers``               CSV and JSONL files as ``(line, raw bytes, record)``
``convert``               records to contract JSON lines, dead letters and the tallies
``input_formats``         the worker's input formats: ``[events] input_format``
========================  ==================================================================

``intentstream import`` (:mod:`intentstream.stream.cli.importer`) drives them.
"""
