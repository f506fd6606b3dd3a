"""Faust app and agents: thin adapters between Kafka, Redis and the engine in ``stream``."""
