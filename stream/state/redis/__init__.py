"""Redis backends of the state protocols (:mod:`intentstream.stream.state`).

:mod:`~intentstream.stream.state.redis.keys` names every key the product writes;
:mod:`~intentstream.stream.state.redis.client` builds the one kind of client from
``[redis]`` settings; each other module is one protocol's Redis backend
(``sessions``, ``fatigue``, ``personas``).
"""
