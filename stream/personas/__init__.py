"""Personas: online clustering of closed intent segments into cluster personas.

Two kinds of persona appear in this product:

* the **behaviour persona** of a segment: its behaviour stage and main activity, set by
  the sessionizer (:mod:`intentstream.stream.sessions.segments`);
* the **cluster persona** of a user: a River cluster id, with that cluster's label
  (:class:`~intentstream.stream.personas.labels.ClusterLabel`), learned by this package
  from the user's recent segments and published by the single writer.

Modules, in the order a segment goes through them:

===============  ==========================================================================
``features``     a segment -> its fixed-shape feature vector
``stats``        per-cluster statistics (:class:`~intentstream.stream.personas.stats.ClusterStats`)
``labels``       a cluster's label, from its statistics
``model``        the River pipeline (feature scaling, the clustering estimator) and
                 :class:`~intentstream.stream.personas.model.PersonaModel`: learn a
                 segment, a user's cluster persona
``checkpoint``   the model's checkpoint bytes (trust boundary: a pickle)
``service``      the single writer's pure API over a ``PersonaStore``
``merge``        the writer's order across the ``segments`` partitions; checkpoint offsets
``records``      ``segments`` records: parse, learn in order, advance offsets
``playbook``     label words and strategy texts (``config/playbook.toml``)
``scoring``      adjusted Rand index (benchmarks, tests)
===============  ==========================================================================

State: :mod:`intentstream.stream.state.personas` (store), :mod:`intentstream.stream.state.lease`
(the single-writer lease). The Kafka/Redis driver: ``agents/personas.py``. The report:
:mod:`intentstream.stream.report`.
"""
